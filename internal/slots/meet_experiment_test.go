package slots

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
	"github.com/rcluster/rcluster/internal/topology"
)

// TestMeetStrategyExperiment measures how fast each MEET strategy
// converges. It is an experiment, not a check, so it only runs when asked:
//
//	RCLUSTER_MEET_EXPERIMENT=6,30,100 go test -run MeetStrategyExperiment -v ./internal/slots
//
// For each size and strategy it starts fresh nodes (replicas 1), forms the
// cluster step by step and reports, from the first MEET: "known" = every
// node knows every node with no handshake left; "ready" = WaitReady passed.
// With RCLUSTER_MEET_IDLE=1 it first waits (by polling INFO uptime) until
// the nodes are 3s old, to take the 2s CLUSTER_WRITABLE_DELAY out.
//
// Results on this 2-core machine (shared with other jobs, so noisy),
// Redis 7.0.15, cluster-node-timeout 2000, Form right after start:
//
//	nodes strategy  known   ready(from MEET)
//	6     star-in   ~0.2s   ~1.9s (2s floor)
//	6     mesh      ~0.1s   ~1.9s (2s floor)
//	30    star-in   ~1.0s   ~2.0s
//	30    mesh      ~0.2s   ~1.9s
//	100   star-in   ~3-4s   ~4-5s
//	100   star-out  ~3-4s   ~4-5s
//	100   chords    ~1.5s   ~2.5s
//	100   mesh      ~0.6s   ~2.0s
//
// (see the commit message of the change that chose the default for the
// exact figures of the run.)
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

// waitKnown polls until every node knows all n nodes, handshakes done.
func waitKnown(t *testing.T, ctx context.Context, ms []*member, n int) {
	var bo backoff
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
		if err := bo.wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func meetTrial(t *testing.T, n int, s meetStrategy, idle bool) string {
	nodes := redistest.Start(t, n)
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if idle {
		c := redisconn.Options{}.Node(nodes[0].Addr)
		var bo backoff
		for {
			info, err := c.Info(ctx, "server").Result()
			up, _ := strconv.Atoi(topology.ParseInfo(info)["uptime_in_seconds"])
			if err == nil && up >= 3 {
				break
			}
			if err := bo.wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
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
		a, b := stagedEdges(ms, s)
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
	addrs := make([]string, len(ms))
	for i, m := range ms {
		addrs[i] = m.addr
	}
	if _, err := waitReady(ctx, addrs, n, redisconn.Options{}); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(t0)
	return fmt.Sprintf("%4d nodes %-8s meets=%5d known=%6s replicated=%6s ready=%6s (from start %s)",
		n, s, sent, known.Round(time.Millisecond), repl.Round(time.Millisecond),
		ready.Round(time.Millisecond), time.Since(started).Round(time.Millisecond))
}
