package slots

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
	"github.com/rcluster/rcluster/internal/topology"
)

// TestMeetStrategyExperiment measures how fast each MEET strategy
// converges. It is an experiment, not a check, so it only runs when asked:
//
//	RCLUSTER_MEET_EXPERIMENT=6,30,100 RCLUSTER_NODE_TIMEOUT=5000 \
//	  go test -run MeetStrategyExperiment -v ./internal/slots
//
// (RCLUSTER_MEET_STRATEGIES=mesh,staged,... picks strategies,
// RCLUSTER_MEET_IDLE=1 waits until the nodes are 3s old first,
// RCLUSTER_NO_SETTLE=1 skips the settle phase.) For each size it starts
// fresh nodes (replicas 1) and forms the cluster phase by phase, reporting
// from the first MEET: known = every node knows every node, no handshake
// left; settled = every view matches the plan (settle done); ready =
// WaitReady passed; and the total from the nodes' start.
//
// One run on this 2-core machine, Redis 7.0.15, cluster-node-timeout 5000
// (the template's value), while other jobs kept the load average at 20-60,
// so single figures are noisy:
//
//	nodes strategy       MEETs  known  settled  ready  from start
//	6     star-in            5  1.08s   1.12s   1.95s   1.95s
//	6     chords            18  0.88s   0.93s   1.94s   1.94s
//	6     mesh              30  0.26s   0.31s   1.97s   1.98s
//	6     staged            15  0.36s   0.44s   1.99s   2.00s
//	30    star-in           29  7.95s   8.60s   8.90s   9.04s
//	30    chords           150  2.71s   3.46s   3.78s   3.84s
//	30    mesh             870  0.73s   1.10s   1.78s   1.82s
//	30    staged-chords    179  2.94s   3.06s   3.17s   3.19s
//	30    staged (half)    435  0.47s   0.66s   1.99s   2.02s
//	100   star-in           99  7.58s  15.76s  16.07s  16.13s
//	100   chords           700  2.07s   6.56s   6.78s   6.87s
//	100   mesh            9900  MEET pipelines timed out (2s) on overloaded nodes
//	100   staged-half     4950  7.20s   7.56s   7.77s   7.87s
//	100   staged (chords)  813  2.5-3.9s 2.9-4.2s 3.0-4.3s 3.1-4.3s
//
// Without the settle phase, 100 nodes staged took 6.4-10.3s to be ready
// (views waited for Redis's own pings), 2.2-3.4s with it. Below ~32 nodes
// every non-star strategy reaches the 2s floor (CLUSTER_WRITABLE_DELAY from
// the node's start); above, n^2 direct handshakes swamp the CPU and chords
// plus gossip win. Hence meetStaged: pairs up to halfMax nodes, chords
// above, replicas attached before the others hear of them, then settle.
func TestMeetStrategyExperiment(t *testing.T) {
	spec := os.Getenv("RCLUSTER_MEET_EXPERIMENT")
	if spec == "" {
		t.Skip("set RCLUSTER_MEET_EXPERIMENT=6,30,100 to run")
	}
	redistest.Integration(t)
	var sizes []int
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, n)
	}
	strategies := []meetStrategy{meetStarIn, meetChords, meetMesh, meetStagedHalf, meetStagedChords}
	if s := os.Getenv("RCLUSTER_MEET_STRATEGIES"); s != "" {
		strategies = nil
		for _, name := range strings.Split(s, ",") {
			for _, x := range []meetStrategy{meetMesh, meetStarIn, meetStarOut, meetChords, meetHalf, meetStaged, meetStagedHalf, meetStagedChords} {
				if x.String() == name {
					strategies = append(strategies, x)
				}
			}
		}
	}
	var table []string
	for _, n := range sizes {
		for _, s := range strategies {
			t.Run(fmt.Sprintf("%d-%s", n, s), func(t *testing.T) {
				line := meetTrial(t, n, s, os.Getenv("RCLUSTER_MEET_IDLE") == "1")
				table = append(table, line)
				t.Log(line)
			})
		}
	}
	t.Logf("summary:\n%s", strings.Join(table, "\n"))
}

// meetStrategy decides who sends CLUSTER MEET to whom in the experiment.
type meetStrategy int

const (
	// meetMesh: every node MEETs every other node (pipelined per node).
	meetMesh meetStrategy = iota
	// meetStarIn: every node MEETs the first node (redis-cli's way).
	meetStarIn
	// meetStarOut: the first node MEETs every other node (one pipeline).
	meetStarOut
	// meetChords: every node MEETs nodes i+1, i+2, i+4, ... (mod n).
	meetChords
	// meetHalf: every pair MEETs once: node i MEETs i+1 .. i+n/2 (mod n),
	// so the work is spread evenly over the senders.
	meetHalf
	// meetStaged is Form's way (stagedEdges with groupPairs): masters with
	// each other and each replica with its master, REPLICATE, then the
	// remaining pairs, pair by pair up to halfMax nodes, along chords above.
	meetStaged
	// meetStagedHalf, meetStagedChords: meetStaged with always halfPairs
	// or always chordPairs.
	meetStagedHalf
	meetStagedChords
)

func (s meetStrategy) String() string {
	return [...]string{"mesh", "star-in", "star-out", "chords", "half", "staged", "staged-half", "staged-chords"}[s]
}

// pairs is the group pairing of the staged strategies, for stagedEdges.
func (s meetStrategy) pairs(k int) pairsFunc {
	switch s {
	case meetStagedHalf:
		return halfPairs
	case meetStagedChords:
		return chordPairs
	default:
		return groupPairs(k)
	}
}

// meetEdges lists, per sender index, the indexes it sends CLUSTER MEET to,
// for the single-round strategies.
func meetEdges(n int, s meetStrategy) [][]int {
	e := make([][]int, n)
	switch s {
	case meetMesh:
		for i := range e {
			for j := 0; j < n; j++ {
				if j != i {
					e[i] = append(e[i], j)
				}
			}
		}
	case meetStarIn:
		for i := 1; i < n; i++ {
			e[i] = []int{0}
		}
	case meetStarOut:
		for j := 1; j < n; j++ {
			e[0] = append(e[0], j)
		}
	case meetHalf:
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		halfPairs(all, func(x, y int) { e[x] = append(e[x], y) })
	case meetChords:
		for i := range e {
			seen := map[int]bool{i: true}
			for d := 1; d < n; d *= 2 {
				j := (i + d) % n
				if !seen[j] {
					seen[j] = true
					e[i] = append(e[i], j)
				}
			}
		}
	}
	return e
}

// Every single-round strategy connects all nodes (directly or through gossip paths), and
// half meets every pair exactly once.
func TestMeetEdges(t *testing.T) {
	for _, n := range []int{3, 4, 6, 7, 30, 100} {
		for _, s := range []meetStrategy{meetMesh, meetStarIn, meetStarOut, meetChords, meetHalf} {
			e := meetEdges(n, s)
			// union-find over undirected edges
			parent := make([]int, n)
			for i := range parent {
				parent[i] = i
			}
			var find func(int) int
			find = func(x int) int {
				for parent[x] != x {
					x = parent[x]
				}
				return x
			}
			pairs := map[[2]int]int{}
			for i, js := range e {
				for _, j := range js {
					if j == i || j < 0 || j >= n {
						t.Fatalf("%s n=%d: bad edge %d->%d", s, n, i, j)
					}
					parent[find(i)] = find(j)
					pairs[[2]int{min(i, j), max(i, j)}]++
				}
			}
			for i := range parent {
				if find(i) != find(0) {
					t.Fatalf("%s n=%d: node %d not connected", s, n, i)
				}
			}
			if s == meetHalf {
				if len(pairs) != n*(n-1)/2 {
					t.Fatalf("half n=%d: %d pairs, want %d", n, len(pairs), n*(n-1)/2)
				}
				for p, c := range pairs {
					if c != 1 {
						t.Fatalf("half n=%d: pair %v met %d times", n, p, c)
					}
				}
			}
		}
	}
}

// waitKnown polls until every node knows all n nodes, handshakes done.
func waitKnown(t *testing.T, ctx context.Context, ms []*member, n int) {
	var bo poll.Backoff
	for {
		ok := make([]bool, len(ms))
		parallel(len(ms), func(i int) {
			v, err := ms[i].c.ClusterNodes(ctx).Result()
			if err != nil {
				return
			}
			ns, err := topology.ParseNodes(v)
			if err != nil || len(ns) != n {
				return
			}
			for _, x := range ns {
				if x.HasFlag("handshake") {
					return
				}
			}
			ok[i] = true
		})
		all := true
		for _, x := range ok {
			all = all && x
		}
		if all {
			return
		}
		if err := bo.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// nodeTimeoutArgs reads RCLUSTER_NODE_TIMEOUT (ms) for the test nodes.
func nodeTimeoutArgs() []string {
	if v := os.Getenv("RCLUSTER_NODE_TIMEOUT"); v != "" {
		return []string{"--cluster-node-timeout", v}
	}
	return nil
}

func meetTrial(t *testing.T, n int, s meetStrategy, idle bool) string {
	nodes := redistest.Start(t, n, nodeTimeoutArgs()...)
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if idle {
		waitUptime(t, ctx, nodes, 3)
		started = time.Now()
	}
	p, err := NewPlan(specNodes(nodes), 1)
	if err != nil {
		t.Fatal(err)
	}
	var ms []*member
	for i, sh := range p.Shards {
		ms = append(ms, &member{node: sh.Master, shard: i})
	}
	for i, sh := range p.Shards {
		for _, r := range sh.Replicas {
			ms = append(ms, &member{node: r, shard: i, replica: true})
		}
	}
	for _, m := range ms {
		m.addr = m.node.Addr()
		m.c = nodeClient(redisconn.Options{}, m.addr)
	}
	defer func() {
		for _, m := range ms {
			m.c.Close()
		}
	}()
	if err := precheck(ctx, ms); err != nil {
		t.Fatal(err)
	}
	if err := assignSlots(ctx, p, ms); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	var sent int
	var known, repl time.Duration
	if s >= meetStaged {
		a, b := stagedEdges(ms, s.pairs)
		k, err := meet(ctx, ms, a)
		if err != nil {
			t.Fatal(err)
		}
		if err := replicate(ctx, ms); err != nil {
			t.Fatal(err)
		}
		repl = time.Since(t0)
		k2, err := meet(ctx, ms, b)
		if err != nil {
			t.Fatal(err)
		}
		sent = k + k2
		waitKnown(t, ctx, ms, n)
		known = time.Since(t0)
	} else {
		k, err := meet(ctx, ms, meetEdges(len(ms), s))
		if err != nil {
			t.Fatal(err)
		}
		sent = k
		waitKnown(t, ctx, ms, n)
		known = time.Since(t0)
		if err := replicate(ctx, ms); err != nil {
			t.Fatal(err)
		}
		repl = time.Since(t0)
	}
	nudges := -1
	if os.Getenv("RCLUSTER_NO_SETTLE") != "1" {
		nudges, err = settle(ctx, p, ms, settleLimits{})
		if err != nil {
			t.Fatal(err)
		}
	}
	settled := time.Since(t0)
	addrs := make([]string, len(ms))
	for i, m := range ms {
		addrs[i] = m.addr
	}
	if _, err := waitReady(ctx, addrs, n, redisconn.Options{}); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(t0)
	return fmt.Sprintf("%4d nodes %-13s meets=%5d known=%6s replicated=%6s settled=%6s (nudges %4d) ready=%6s (from start %s)",
		n, s, sent, known.Round(time.Millisecond), repl.Round(time.Millisecond), settled.Round(time.Millisecond), nudges,
		ready.Round(time.Millisecond), time.Since(started).Round(time.Millisecond))
}

// TestFormTiming measures Form itself on nodes that are already running:
//
//	RCLUSTER_FORM_TIMING=3,6,30 go test -run FormTiming -v ./internal/slots
//
// "fresh": Form right after redistest.Start returns (what `rcluster up`
// does); "idle": Form on nodes that have run for 3s. RCLUSTER_NODE_TIMEOUT
// overrides cluster-node-timeout (ms) of the test nodes.
func TestFormTiming(t *testing.T) {
	spec := os.Getenv("RCLUSTER_FORM_TIMING")
	if spec == "" {
		t.Skip("set RCLUSTER_FORM_TIMING=3,6,30 to run")
	}
	redistest.Integration(t)
	var out []string
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatal(err)
		}
		replicas := 1
		if n < 6 {
			replicas = 0
		}
		for _, idle := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d-idle=%v", n, idle), func(t *testing.T) {
				nodes := redistest.Start(t, n, nodeTimeoutArgs()...)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				if idle {
					waitUptime(t, ctx, nodes, 3)
				}
				p, err := NewPlan(specNodes(nodes), replicas)
				if err != nil {
					t.Fatal(err)
				}
				var log strings.Builder
				st := time.Now()
				if err := Form(ctx, p, FormOptions{Log: &log}); err != nil {
					t.Fatalf("%v\n%s", err, log.String())
				}
				line := fmt.Sprintf("%3d nodes replicas %d idle=%-5v Form %s", n, replicas, idle, time.Since(st).Round(time.Millisecond))
				out = append(out, line)
				t.Logf("%s\n%s", line, log.String())
			})
		}
	}
	t.Logf("summary:\n%s", strings.Join(out, "\n"))
}

// waitUptime polls until every node reports uptime_in_seconds >= secs.
func waitUptime(t *testing.T, ctx context.Context, nodes []*redistest.Node, secs int) {
	t.Helper()
	for _, nd := range nodes {
		c := redisconn.Options{}.Node(nd.Addr)
		var bo poll.Backoff
		for {
			info, err := c.Info(ctx, "server").Result()
			up, _ := strconv.Atoi(topology.ParseInfo(info)["uptime_in_seconds"])
			if err == nil && up >= secs {
				break
			}
			if err := bo.Wait(ctx); err != nil {
				c.Close()
				t.Fatal(err)
			}
		}
		c.Close()
	}
}
