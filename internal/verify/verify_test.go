package verify

import (
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/health"
	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
	"github.com/rcluster/rcluster/internal/topology"
)

func opts(nodes []*redistest.Node, masters, replicas int) Options {
	return Options{
		Seeds:  []string{nodes[0].Addr},
		Expect: Expect{Nodes: len(nodes), Masters: masters, Replicas: replicas},
		Conn:   redisconn.Options{Timeout: time.Second},
	}
}

func run(t *testing.T, o Options) Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep := Run(ctx, o, nil)
	for _, c := range rep.Checks {
		t.Logf("%v %s (%s) %s", c.OK, c.Name, c.Duration.Round(time.Millisecond), c.Detail)
	}
	return rep
}

func find(t *testing.T, rep Report, name string) Result {
	t.Helper()
	for _, c := range rep.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check named %q in report", name)
	return Result{}
}

// requireFail asserts the named check failed and its detail contains every
// fragment (the node/slot at fault).
func requireFail(t *testing.T, rep Report, name string, fragments ...string) {
	t.Helper()
	if rep.OK {
		t.Fatalf("report OK, want %q to fail", name)
	}
	c := find(t, rep, name)
	if c.OK {
		t.Fatalf("check %q passed, want failure", name)
	}
	for _, f := range fragments {
		if !strings.Contains(c.Detail, f) {
			t.Errorf("check %q detail %q does not mention %q", name, c.Detail, f)
		}
	}
}

func nodeID(t *testing.T, addr string) string {
	t.Helper()
	c := redisconn.Options{}.Node(addr)
	defer c.Close()
	id, err := c.Do(context.Background(), "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// waitFor polls cond (bounded) until it returns true.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	delay := 20 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(delay)
		if delay < 500*time.Millisecond {
			delay *= 2
		}
	}
}

// settled waits (bounded) until health judges the cluster healthy: right
// after redis-cli's create, which redistest.CreateCluster waits for only
// until cluster_state:ok, some views still show replicas as masters for up
// to ~1s. It returns how long that took.
func settled(t *testing.T, o Options) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	var last []health.Problem
	for b := (poll.Backoff{Max: 100 * time.Millisecond}); ; {
		snap, err := Gather(ctx, o)
		if err == nil {
			if last = health.Judge(snap.Answers(), o.Expect.Nodes); last == nil {
				return time.Since(start)
			}
		}
		if werr := b.Wait(ctx); werr != nil {
			t.Fatalf("cluster never settled: %v %v", err, last)
		}
	}
}

func TestHealthyReferenceClusters(t *testing.T) {
	redistest.Integration(t)
	for _, tc := range []struct{ n, replicas int }{{3, 0}, {6, 1}} {
		nodes := redistest.Start(t, tc.n)
		redistest.CreateCluster(t, nodes, tc.replicas)
		o := opts(nodes, tc.n/(tc.replicas+1), tc.replicas)
		t.Logf("%d nodes settled %s after redis-cli's create", tc.n, settled(t, o).Round(time.Millisecond))
		rep := run(t, o)
		if !rep.OK {
			t.Fatalf("%d nodes, replicas %d: healthy cluster made by redis-cli failed: %v", tc.n, tc.replicas, rep.Failed())
		}
		if len(rep.Checks) != len(All())+1 {
			t.Errorf("ran %d checks, want %d", len(rep.Checks), len(All())+1)
		}
	}
}

// TestClientChecksFailWhenBroken runs each client check with the thing it
// checks broken on purpose against a healthy cluster.
func TestClientChecksFailWhenBroken(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3)
	redistest.CreateCluster(t, nodes, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := opts(nodes, 3, 0)
	settled(t, o)
	snap, err := Gather(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Opts: o, Snap: snap, RunID: newRunID()}
	broken := map[string]func(context.Context, *Env) error{
		"lua: script returns the wrong value":         luaCheck{script: "return tonumber(ARGV[1]) + tonumber(ARGV[2]) + 1", args: []any{1, 2}, want: 3}.run,
		"pub/sub: subscriber misses messages":         pubsubCheck{perChannel: 5, drop: 3}.run,
		"pipeline: wrong value read back":             pipelineCheck{values: []string{"42", "44"}}.run,
		"tx: wrong value read back":                   txPipelineCheck{values: []string{"45", "45"}}.run,
		"watch: updates without WATCH race":           watchCheck{clients: 8, increments: 50, skipWatch: true}.run,
		"timeout: command finishes in time":           timeoutCheck{timeout: 3 * time.Second, block: time.Second, margin: time.Second}.run,
		"sharded pub/sub: message on another channel": shardedPubSubCheck{publishElsewhere: true}.run,
		"MOVED: asking the owner gets no redirect":    movedCheck{askOwner: true}.run,
		"geo: wrong distance":                         geoCheck{km: 100}.run,
		"concurrency: same-slot MGET is not refused":  concurrencyCheck{workers: 2, opsPerWorker: 2, sameSlotCross: true}.run,
	}
	for name, fn := range broken {
		t.Run(name, func(t *testing.T) {
			if err := fn(ctx, env); err == nil {
				t.Fatalf("check passed with %s", name)
			} else {
				t.Logf("failed as expected: %v", err)
			}
		})
	}
	// The same checks with correct parameters pass on this cluster.
	rep := run(t, o)
	if !rep.OK {
		t.Fatalf("healthy cluster failed: %v", rep.Failed())
	}
	// Every key verify touched is gone.
	c := o.Conn.Cluster(redistest.Addrs(nodes))
	defer c.Close()
	var (
		mu   sync.Mutex // ForEachMaster calls fn concurrently
		left []string
	)
	err = c.ForEachMaster(ctx, func(ctx context.Context, m *redisClient) error {
		keys, err := m.Keys(ctx, "rcluster:verify:*").Result()
		mu.Lock()
		left = append(left, keys...)
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("verify left keys behind: %v", left)
	}
}

func TestSlotsDeletedOnOwner(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3)
	redistest.CreateCluster(t, nodes, 0)
	c := redisconn.Options{}.Node(nodes[0].Addr)
	defer c.Close()
	if err := c.Do(context.Background(), "CLUSTER", "DELSLOTSRANGE", 0, 99).Err(); err != nil {
		t.Fatal(err)
	}
	rep := run(t, opts(nodes, 3, 0))
	requireFail(t, rep, "slots covered", "0-99", nodes[0].Addr)
}

func TestSlotLeftMigrating(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3)
	redistest.CreateCluster(t, nodes, 0)
	c := redisconn.Options{}.Node(nodes[0].Addr)
	defer c.Close()
	if err := c.Do(context.Background(), "CLUSTER", "SETSLOT", 42, "MIGRATING", nodeID(t, nodes[1].Addr)).Err(); err != nil {
		t.Fatal(err)
	}
	rep := run(t, opts(nodes, 3, 0))
	requireFail(t, rep, "no open slots", "slot 42", nodes[0].Addr, nodes[1].Addr)
}

func TestMasterKilledWithoutReplica(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3)
	redistest.CreateCluster(t, nodes, 0)
	nodes[2].Kill()
	rep := run(t, opts(nodes, 3, 0))
	requireFail(t, rep, "nodes reachable", nodes[2].Addr)
	requireFail(t, rep, "slots covered", "10923-16383", nodes[2].Addr)
	// Once the others flag it (node timeout 2s), the flag check names it too.
	o := opts(nodes, 3, 0)
	waitFor(t, 15*time.Second, "the dead master to be flagged fail", func() bool {
		r := Run(context.Background(), o, nil)
		return !find(t, r, "no failed nodes").OK && !find(t, r, "cluster_state ok").OK
	})
	rep = run(t, o)
	requireFail(t, rep, "no failed nodes", nodes[2].Addr)
}

func TestMasterStoppedIsBounded(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3)
	redistest.CreateCluster(t, nodes, 0)
	nodes[1].Signal(t, syscall.SIGSTOP)
	defer nodes[1].Signal(t, syscall.SIGCONT)
	o := opts(nodes, 3, 0)
	o.Conn.Timeout = 500 * time.Millisecond
	start := time.Now()
	rep := run(t, o)
	el := time.Since(start)
	requireFail(t, rep, "nodes reachable", nodes[1].Addr)
	// Bounded: one per-call timeout for the frozen node, not a hang.
	if el > 10*time.Second {
		t.Errorf("verify with a SIGSTOPped master took %s", el)
	}
}

func TestNodeForgetsAnother(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 6)
	redistest.CreateCluster(t, nodes, 1)
	// Forget a replica (a node may not forget its own master).
	var replica *redistest.Node
	for _, n := range nodes {
		c := redisconn.Options{}.Node(n.Addr)
		info, _ := c.Info(context.Background(), "replication").Result()
		c.Close()
		if topology.ParseInfo(info)["role"] == "slave" {
			replica = n
			break
		}
	}
	var forgetter *redistest.Node
	for _, n := range nodes {
		if n != replica {
			forgetter = n
			break
		}
	}
	c := redisconn.Options{}.Node(forgetter.Addr)
	defer c.Close()
	if err := c.ClusterForget(context.Background(), nodeID(t, replica.Addr)).Err(); err != nil {
		t.Fatal(err)
	}
	rep := run(t, opts(nodes, 3, 1))
	requireFail(t, rep, "known nodes", forgetter.Addr+" does not know "+replica.Addr)
}

func TestPlainRedisServer(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 1, "--cluster-enabled", "no")
	rep := run(t, Options{Seeds: []string{nodes[0].Addr}, Expect: Expect{Replicas: -1}})
	requireFail(t, rep, "nodes reachable", nodes[0].Addr, "not cluster-enabled")
}

func TestNothingListening(t *testing.T) {
	redistest.Integration(t)
	base := redistest.PortBlock(t, 1)
	addr := "127.0.0.1:" + itoa(base)
	rep := run(t, Options{Seeds: []string{addr}, Expect: Expect{Replicas: -1}})
	requireFail(t, rep, "nodes reachable", addr)
	if len(rep.Checks) != 1 {
		t.Errorf("ran %d checks on nothing, want only the reachability check", len(rep.Checks))
	}
}
