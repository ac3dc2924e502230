package events

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
	"github.com/rcluster/rcluster/internal/topology"
)

// A master SIGKILLed: the watcher sees it unreachable, suspected, failed,
// then its replica take over, in that order, each change once.
func TestWatchSeesAutomaticFailover(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 6, "--cluster-node-timeout", "1000", "--repl-diskless-sync-delay", "0")
	redistest.CreateCluster(t, nodes, 1)
	victim := nodes[0] // redis-cli makes the first three the masters
	conn := redisconn.Options{Timeout: time.Second}
	replica := replicaOf(t, conn, victim.Addr)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wctx, stop := context.WithCancel(ctx)
	got := make(chan Event, 256)
	done := make(chan error, 1)
	// Seeded with one node: the watcher finds the others.
	go func() {
		done <- Watch(wctx, []string{nodes[1].Addr}, conn, 50*time.Millisecond, func(e Event) { got <- e })
	}()

	var evs []Event
	wait := func(what string, match func(Event) bool) {
		t.Helper()
		for {
			select {
			case e := <-got:
				evs = append(evs, e)
				if match(e) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %s event within the deadline; got:\n%s", what, lines(evs))
			}
		}
	}
	wait("watch start", func(e Event) bool { return e.Kind == KindWatch })
	if !strings.Contains(evs[0].Message, "6 nodes") {
		t.Errorf("watch start %q: want it to have found all 6 nodes from one seed", evs[0].Message)
	}
	killed := time.Now()
	victim.Kill()
	wait("failover", func(e Event) bool { return e.Kind == KindFailover })
	took := time.Since(killed)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Watch: %v", err)
	}
	for e := range drain(got) {
		evs = append(evs, e)
	}
	t.Logf("kill to failover event: %v\n%s", took.Round(time.Millisecond), lines(evs))

	first := func(kind, node string) int {
		for i, e := range evs {
			if e.Kind == kind && e.Node == node {
				return i
			}
		}
		return -1
	}
	unreachable, suspected, failed := first(KindUnreachable, victim.Addr), first(KindSuspected, victim.Addr), first(KindFailed, victim.Addr)
	failover := first(KindFailover, replica)
	if unreachable < 0 || suspected < 0 || failed < 0 || failover < 0 {
		t.Fatalf("want unreachable, suspected and failed naming %s and a failover naming %s; got:\n%s", victim.Addr, replica, lines(evs))
	}
	if !(unreachable < failed && suspected < failed && failed < failover) {
		t.Errorf("events out of order (unreachable %d, suspected %d, failed %d, failover %d):\n%s", unreachable, suspected, failed, failover, lines(evs))
	}
	if f := evs[failover]; f.From != victim.Addr || f.Slots != "0-5460" || f.Epoch == 0 {
		t.Errorf("failover event %+v: want from %s, slots 0-5460, its new epoch", f, victim.Addr)
	}
	// Each change once: one failed, one failover, one suspicion per observer.
	count := map[string]int{}
	for _, e := range evs {
		count[e.Kind+" "+e.Node+" "+e.Peer]++
	}
	for k, n := range count {
		if n > 1 && !strings.HasPrefix(k, KindWatch) {
			t.Errorf("%q reported %d times:\n%s", k, n, lines(evs))
		}
	}
	if last := evs[len(evs)-1]; last.Kind != KindWatch {
		t.Errorf("last event %v, want the watch's stop", last)
	}
}

// replicaOf returns the address of master's replica, as master sees it.
func replicaOf(t *testing.T, conn redisconn.Options, master string) string {
	t.Helper()
	c := conn.Node(master)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	txt, err := c.ClusterNodes(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := topology.ParseNodes(txt)
	if err != nil {
		t.Fatal(err)
	}
	me, _ := topology.Myself(nodes)
	for _, n := range nodes {
		if n.IsReplica() && n.MasterID == me.ID {
			return n.Addr
		}
	}
	t.Fatalf("%s has no replica:\n%s", master, txt)
	return ""
}

// drain yields what is already in ch.
func drain(ch chan Event) func(func(Event) bool) {
	return func(yield func(Event) bool) {
		for {
			select {
			case e := <-ch:
				if !yield(e) {
					return
				}
			default:
				return
			}
		}
	}
}

func lines(evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString("  " + e.String() + "\n")
	}
	return b.String()
}
