package rclustertest_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/topology"
	"github.com/rcluster/rcluster/rclustertest"
)

// shared is one 3-master, 3-replica cluster for the fault tests of this
// binary (rclustertest.Shared), as a user's TestMain would set it up.
var shared *rclustertest.Shared

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		var err error
		shared, err = rclustertest.NewShared(rclustertest.WithReplicas(1),
			rclustertest.WithConfig("cluster-node-timeout", "1000"))
		switch {
		case errors.Is(err, rclustertest.ErrNoRedisServer) && os.Getenv("CI") != "true":
			fmt.Fprintln(os.Stderr, "skipping the shared-cluster tests:", err)
		case err != nil:
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if shared != nil {
		if err := shared.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "close the shared cluster:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func takeShared(t *testing.T) *rclustertest.Cluster {
	t.Helper()
	if shared == nil {
		t.Skip("no shared cluster (-short, or no redis-server)")
	}
	return shared.Take(t)
}

// agreeNow reads every node's CLUSTER NODES once, with no polling, and
// fails unless all agree on roles and slot owners: what every operation
// guarantees when it returns. It also runs redis-cli --cluster check.
func agreeNow(ctx context.Context, t *testing.T, c *rclustertest.Cluster, skip ...string) {
	t.Helper()
	var slotRef, roleRef, refAddr string
	for _, a := range c.Addrs() {
		if contains(skip, a) {
			continue
		}
		txt, err := c.Client(a).ClusterNodes(ctx).Result()
		if err != nil {
			t.Fatalf("CLUSTER NODES on %s: %v", a, err)
		}
		nodes, err := topology.ParseNodes(txt)
		if err != nil {
			t.Fatal(err)
		}
		slotSig, roleSig := topology.SlotSignature(nodes), topology.RoleSignature(nodes)
		if refAddr == "" {
			slotRef, roleRef, refAddr = slotSig, roleSig, a
			continue
		}
		if slotSig != slotRef || roleSig != roleRef {
			t.Errorf("right after the operation %s disagrees with %s:\n%s", a, refAddr, txt)
		}
	}
	if cli, err := exec.LookPath("redis-cli"); err == nil && len(skip) == 0 {
		out, err := exec.CommandContext(ctx, cli, "--cluster", "check", refAddr).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "[OK] All 16384 slots covered") {
			t.Errorf("redis-cli --cluster check %s: %v\n%s", refAddr, err, out)
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// writer writes unique keys through a cluster client without pause and
// counts every acknowledged write; stop returns them.
type writer struct {
	acked  []string
	errs   atomic.Int64
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
}

func startWriter(c *rclustertest.Cluster) *writer {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	w := &writer{cancel: cancel, done: make(chan struct{})}
	rdb := c.ClusterClient()
	go func() {
		defer close(w.done)
		for i := 0; i < 200000 && ctx.Err() == nil; i++ {
			k := fmt.Sprintf("w:%d", i)
			if err := rdb.Set(ctx, k, i, 0).Err(); err != nil {
				w.errs.Add(1)
				continue
			}
			w.mu.Lock()
			w.acked = append(w.acked, k)
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *writer) stop() []string {
	w.cancel()
	<-w.done
	return w.acked
}

// stopAndCount stops w and fails the test unless the workload ran and
// every acknowledged write (and each of extra, keys the test wrote itself)
// reads back: zero acknowledged writes lost, said in the log.
func (w *writer) stopAndCount(ctx context.Context, t *testing.T, c *rclustertest.Cluster, during string, extra ...string) {
	t.Helper()
	acked := w.stop()
	if len(acked) < 100 {
		t.Fatalf("only %d writes acknowledged: the workload did not run", len(acked))
	}
	all := append(acked, extra...)
	if n := lost(ctx, t, c, all); n != 0 {
		t.Fatalf("%d of %d acknowledged writes lost %s", n, len(all), during)
	}
	t.Logf("acknowledged writes lost %s: 0 of %d (%d write errors meanwhile)", during, len(all), w.errs.Load())
}

// lost reads every acknowledged key back with a fresh client.
func lost(ctx context.Context, t *testing.T, c *rclustertest.Cluster, keys []string) int {
	t.Helper()
	rdb := c.ClusterClient()
	missing := 0
	for _, k := range keys {
		if err := rdb.Get(ctx, k).Err(); errors.Is(err, redis.Nil) {
			missing++
		} else if err != nil {
			t.Fatalf("GET %s: %v", k, err)
		}
	}
	return missing
}

// TestSharedFailoverLosesNoAcknowledgedWrite: a go-redis ClusterClient
// writing without pause while every shard fails over gracefully (by node,
// by key, by slot) loses no acknowledged write; after each failover every
// node agrees at once.
func TestSharedFailoverLosesNoAcknowledgedWrite(t *testing.T) {
	c := takeShared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	w := startWriter(c)
	for _, do := range []func() rclustertest.FailoverResult{
		func() rclustertest.FailoverResult { return c.Failover(c.Masters()[0]) },
		func() rclustertest.FailoverResult { return c.FailoverKey("{" + topology.KeyForSlot(6000) + "}") },
		func() rclustertest.FailoverResult { return c.FailoverSlot(16000) },
	} {
		r := do()
		t.Logf("failover %s -> %s in %s", r.OldMaster, r.NewMaster, r.Took.Round(time.Millisecond))
		agreeNow(ctx, t, c)
	}
	w.stopAndCount(ctx, t, c, "across 3 graceful failovers")
}

// TestSharedFaultsThenReset: kill a master and wait for its replica, pause
// another, stop a replica; the next test that takes the shared cluster
// finds it as Start left it: every node running, planned masters, no keys.
func TestSharedFaultsThenReset(t *testing.T) {
	t.Run("faults", func(t *testing.T) {
		c := takeShared(t)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		rdb := c.ClusterClient()
		for i := range 100 {
			if err := rdb.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		m := c.Masters()
		r := c.KillAndWaitFailover(m[0])
		t.Logf("kill %s: %s", m[0], r.Detail)
		agreeNow(ctx, t, c, m[0])
		c.Pause(m[1])
		c.Stop(c.Addrs()[5])
	})
	t.Run("next test sees reset state", func(t *testing.T) {
		c := takeShared(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		agreeNow(ctx, t, c)
		for i, a := range c.Addrs() {
			info, err := c.Client(a).Info(ctx, "replication").Result()
			if err != nil {
				t.Fatalf("%s: %v", a, err)
			}
			wantMaster := i < len(c.Masters())
			if strings.Contains(info, "role:master") != wantMaster {
				t.Errorf("%s: %s, want master=%v as planned", a, firstLine(info), wantMaster)
			}
			if n, err := c.Client(a).DBSize(ctx).Result(); err != nil || n != 0 {
				t.Errorf("%s holds %d keys after reset (%v)", a, n, err)
			}
		}
	})
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "role:") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// TestSharedEventsLineUp: what the test did and what the watcher saw are
// in the cluster's event log, in order.
func TestSharedEventsLineUp(t *testing.T) {
	c := takeShared(t)
	c.Watch()
	start := time.Now()
	c.KillAndWaitFailover(c.Masters()[2])
	var kinds []string
	for _, e := range c.Events() {
		if e.Time.Before(start) {
			continue
		}
		kinds = append(kinds, e.Kind)
	}
	got := strings.Join(kinds, " ")
	t.Logf("events: %s", got)
	if !strings.Contains(got, "node") || !strings.Contains(got, "failover") || !strings.Contains(got, "failed") {
		t.Errorf("events after a kill and its failover (want the op's node and failover events and the watcher's failed): %s", got)
	}
}
