package rclustertest_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/topology"
	"github.com/rcluster/rcluster/rclustertest"
)

// view is one node's CLUSTER NODES, parsed.
func view(ctx context.Context, t *testing.T, c *rclustertest.Cluster, addr string) []topology.Node {
	t.Helper()
	txt, err := c.Client(addr).ClusterNodes(ctx).Result()
	if err != nil {
		t.Fatalf("CLUSTER NODES on %s: %v", addr, err)
	}
	nodes, err := topology.ParseNodes(txt)
	if err != nil {
		t.Fatal(err)
	}
	return nodes
}

// slotsOf is the slots addr owns, as addr itself sees it.
func slotsOf(ctx context.Context, t *testing.T, c *rclustertest.Cluster, addr string) []topology.SlotRange {
	t.Helper()
	for _, n := range view(ctx, t, c, addr) {
		if n.Addr == addr {
			return topology.MergeRanges(n.Slots)
		}
	}
	t.Fatalf("%s is not in its own view", addr)
	return nil
}

func slotRange(a, b int) []int {
	var out []int
	for s := a; s <= b; s++ {
		out = append(out, s)
	}
	return out
}

// TestSharedSlotMovesThenReset: with a client writing throughout, slots
// move (migrate, rebalance, a held migration aborted and one finished, a
// reshard that empties a master, which Redis then turns into a replica)
// and no acknowledged write is lost; every node agrees after each call. A
// migration is left held; the next test that takes the shared cluster
// finds no open slot, the planned masters and slot split, and no keys.
func TestSharedSlotMovesThenReset(t *testing.T) {
	t.Run("moves", func(t *testing.T) {
		c := takeShared(t)
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		m := c.Masters()
		w := startWriter(c)

		r := c.MigrateSlots(m[1], slotRange(0, 99)...)
		t.Logf("migrate: %s", r.Detail)
		agreeNow(ctx, t, c)
		if got := slotsOf(ctx, t, c, m[1]); topology.FormatRanges(got) != "0-99,5461-10922" {
			t.Errorf("after migrating 0-99 to %s it owns %s", m[1], topology.FormatRanges(got))
		}
		r = c.Rebalance(rclustertest.RebalanceOptions{Threshold: 1})
		t.Logf("rebalance: %s", r.Detail)
		if r.Slots == 0 {
			t.Errorf("rebalance with threshold 1%% moved nothing after 100 slots moved")
		}
		agreeNow(ctx, t, c)

		// A held migration: a plain client gets -ASK for moved keys.
		rdb := c.ClusterClient()
		var keys []string
		for i := range 20 {
			k := fmt.Sprintf("{held}:%d", i)
			if err := rdb.Set(ctx, k, i, 0).Err(); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k)
		}
		slot := rclustertest.SlotOf("{held}")
		r = c.HoldMigration(m[2], slot)
		open := c.OpenSlots()
		// (The writer's keys may share the slot: count only ours.)
		if len(open) != 1 || open[0].Slot != slot || open[0].Target != m[2] || open[0].SourceKeys+open[0].TargetKeys < 20 || open[0].TargetKeys == 0 {
			t.Fatalf("open slots after holding slot %d: %+v, want it open to %s with its 20 keys or more, some moved", slot, open, m[2])
		}
		asks, served := 0, 0
		for _, k := range keys {
			err := c.Client(open[0].Source).Get(ctx, k).Err()
			switch {
			case err == nil:
				served++
			case strings.HasPrefix(err.Error(), "ASK ") && strings.HasSuffix(err.Error(), m[2]):
				asks++
			default:
				t.Errorf("plain GET %s on the source during the held migration: %v, want the value or -ASK to %s", k, err, m[2])
			}
		}
		if asks == 0 || asks+served != len(keys) || int64(asks) > open[0].TargetKeys {
			t.Errorf("plain GETs on the source: %d -ASK, %d served, of %d keys; %d keys moved", asks, served, len(keys), open[0].TargetKeys)
		}
		r = c.AbortMigrations()
		t.Logf("abort: %s", r.Detail)
		if open := c.OpenSlots(); len(open) != 0 {
			t.Errorf("open slots after abort: %+v", open)
		}
		agreeNow(ctx, t, c)
		c.HoldMigration(m[2], slot)
		r = c.FinishMigrations()
		t.Logf("finish: %s", r.Detail)
		agreeNow(ctx, t, c)

		// Empty the first master: Redis makes it a replica of the target.
		n := topology.CountSlots(slotsOf(ctx, t, c, m[0]))
		r = c.Reshard(m[2], n, m[0])
		t.Logf("reshard: %s", r.Detail)
		agreeNow(ctx, t, c)
		for _, v := range view(ctx, t, c, m[1]) {
			if v.Addr == m[0] && !v.IsReplica() {
				t.Fatalf("%s emptied of its slots is %v, not the replica Redis makes of it: the reset below would not be tested", m[0], v.Flags)
			}
		}

		// Left open for the next test's reset (slot 16000 is still the
		// third master's).
		if r := c.HoldMigration(m[1], 16000); r.Slots != 1 {
			t.Fatalf("holding slot 16000 opened %d slots", r.Slots)
		}

		w.stopAndCount(ctx, t, c, "across the slot moves", keys...)
	})
	t.Run("next test sees reset state", func(t *testing.T) {
		c := takeShared(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		agreeNow(ctx, t, c)
		if open := c.OpenSlots(); len(open) != 0 {
			t.Errorf("open slots after reset: %+v", open)
		}
		var did []string
		for _, e := range c.Events() {
			if e.Kind == "reset" || strings.Contains(e.Message, "reset to an empty master") {
				did = append(did, e.Message)
			}
		}
		if last := strings.Join(did, " | "); !strings.Contains(last, "reset to an empty master (reset)") ||
			!strings.Contains(last, "undid 1 open slots") || !strings.Contains(last, "moved ") {
			t.Errorf("the reset's events do not say it undid the open slot, reset the emptied master and moved slots back: %s", last)
		}
		for i, want := range []string{"0-5460", "5461-10922", "10923-16383"} {
			if got := topology.FormatRanges(slotsOf(ctx, t, c, c.Masters()[i])); got != want {
				t.Errorf("after reset %s owns %s, want the planned %s", c.Masters()[i], got, want)
			}
		}
		for _, a := range c.Addrs() {
			if n, err := c.Client(a).DBSize(ctx).Result(); err != nil || n != 0 {
				t.Errorf("%s holds %d keys after reset (%v)", a, n, err)
			}
		}
	})
}

// TestSharedResetKeepDataMovesKeysBack: ResetKeepData after a migration
// moves the slots back to their planned masters with their keys.
func TestSharedResetKeepDataMovesKeysBack(t *testing.T) {
	c := takeShared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rdb := c.ClusterClient()
	var keys []string
	for i := range 2000 {
		k := fmt.Sprintf("keep:%d", i)
		if err := rdb.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	m := c.Masters()
	c.MigrateSlots(m[1], slotRange(0, 1999)...)
	c.ResetKeepData()
	agreeNow(ctx, t, c)
	if got := topology.FormatRanges(slotsOf(ctx, t, c, m[0])); got != "0-5460" {
		t.Errorf("after ResetKeepData %s owns %s, want 0-5460", m[0], got)
	}
	if n := lost(ctx, t, c, keys); n != 0 {
		t.Errorf("%d of %d keys lost by ResetKeepData", n, len(keys))
	}
}

// TestScaleUpAndDownLosesNoAcknowledgedWrite: a test's own cluster scaled
// from 3 masters to 3 masters with a replica each, then to 6 masters (the
// replicas made masters), then back to 3, with a client writing
// throughout: every node agrees after each Scale, nothing is lost.
func TestScaleUpAndDownLosesNoAcknowledgedWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := rclustertest.Start(t, rclustertest.WithMaxNodes(6), rclustertest.WithConfig("cluster-node-timeout", "1000"))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	w := startWriter(c)
	for _, step := range []struct{ nodes, replicas, masters int }{{6, 1, 3}, {6, 0, 6}, {3, 0, 3}} {
		t0 := time.Now()
		c.Scale(step.nodes, step.replicas)
		t.Logf("Scale(%d, %d) in %s", step.nodes, step.replicas, time.Since(t0).Round(time.Millisecond))
		agreeNow(ctx, t, c)
		masters := 0
		for _, n := range view(ctx, t, c, c.Addrs()[0]) {
			if n.IsMaster() && len(n.Slots) > 0 {
				masters++
			}
		}
		if len(c.Addrs()) != step.nodes || masters != step.masters {
			t.Errorf("after Scale(%d, %d): %d nodes, %d masters with slots; want %d and %d", step.nodes, step.replicas,
				len(c.Addrs()), masters, step.nodes, step.masters)
		}
	}
	w.stopAndCount(ctx, t, c, "while scaling")
}

// replicaOf is the host:port of a replica of master, as master's view has it.
func replicaOf(ctx context.Context, t *testing.T, c *rclustertest.Cluster, master string) string {
	t.Helper()
	nodes := view(ctx, t, c, master)
	var id string
	for _, n := range nodes {
		if n.Addr == master {
			id = n.ID
		}
	}
	for _, n := range nodes {
		if n.IsReplica() && n.MasterID == id && n.Trouble() == "" {
			return n.Addr
		}
	}
	t.Fatalf("%s has no replica", master)
	return ""
}

// waitReplicated polls (bounded) until addr holds want keys of slot:
// before a master is killed, what the test counts as written must be on
// its replica (replication is asynchronous; a write it had not shipped is
// lost by Redis's design, not by the migration).
func waitReplicated(ctx context.Context, t *testing.T, c *rclustertest.Cluster, addr string, slot int, want int64) {
	t.Helper()
	rdb := c.Client(addr)
	var n int64
	for i := 0; i < 400; i++ {
		var err error
		if n, err = rdb.ClusterCountKeysInSlot(ctx, slot).Result(); err == nil && n == want {
			return
		}
		time.Sleep(time.Duration(min(i+1, 20)) * time.Millisecond)
	}
	t.Fatalf("replica %s holds %d keys of slot %d, want %d", addr, n, slot, want)
}

// TestSharedFailoverDuringHeldMigration: a migration held mid-way whose
// source, or whose target, is killed and replaced by its replica is
// completed by FinishMigrations with every key readable: the promoted
// replica has no MIGRATING/IMPORTING state (it is not replicated), which
// Finish finds from what the nodes say and completes.
func TestSharedFailoverDuringHeldMigration(t *testing.T) {
	for _, kill := range []string{"source", "target"} {
		t.Run(kill, func(t *testing.T) {
			c := takeShared(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			m := c.Masters()
			src, dst := m[0], m[1]
			slot := 100 // the first master's
			tag := topology.KeyForSlot(slot)
			rdb := c.ClusterClient()
			var keys []string
			for i := range 200 {
				k := fmt.Sprintf("{%s}:%d", tag, i)
				if err := rdb.Set(ctx, k, i, 0).Err(); err != nil {
					t.Fatal(err)
				}
				keys = append(keys, k)
			}
			r := c.HoldMigration(dst, slot)
			open := c.OpenSlots()
			if len(open) != 1 || open[0].TargetKeys == 0 || open[0].SourceKeys == 0 {
				t.Fatalf("held migration: %+v (%s), want keys on both sides", open, r.Detail)
			}
			victim := src
			if kill == "target" {
				victim = dst
			}
			waitReplicated(ctx, t, c, replicaOf(ctx, t, c, src), slot, open[0].SourceKeys)
			waitReplicated(ctx, t, c, replicaOf(ctx, t, c, dst), slot, open[0].TargetKeys)
			f := c.KillAndWaitFailover(victim)
			t.Logf("killed the %s %s: %s took over (%s)", kill, victim, f.NewMaster, f.Detail)
			if !strings.Contains(f.Detail, fmt.Sprintf("open slots %d carried over", slot)) {
				t.Errorf("the failover's result does not say it carried slot %d over: %s", slot, f.Detail)
			}
			// The held migration carried over to the new master, still
			// held: a plain GET of a moved key on the source gets -ASK.
			after := c.OpenSlots()
			wantSrc, wantDst := src, dst
			if kill == "source" {
				wantSrc = f.NewMaster
			} else {
				wantDst = f.NewMaster
			}
			if len(after) != 1 || after[0].Source != wantSrc || after[0].Target != wantDst || after[0].TargetKeys != open[0].TargetKeys {
				t.Fatalf("open slots after the failover: %+v, want slot %d held from %s to %s with %d keys moved", after, slot, wantSrc, wantDst, open[0].TargetKeys)
			}
			asks := 0
			for _, k := range keys {
				if err := c.Client(wantSrc).Get(ctx, k).Err(); err != nil && strings.HasPrefix(err.Error(), "ASK ") && strings.HasSuffix(err.Error(), wantDst) {
					asks++
				}
			}
			if int64(asks) != open[0].TargetKeys {
				t.Errorf("after the failover %d plain GETs on %s got -ASK to %s, want %d", asks, wantSrc, wantDst, open[0].TargetKeys)
			}

			r = c.FinishMigrations()
			t.Logf("finish: %s", r.Detail)
			if open := c.OpenSlots(); len(open) != 0 {
				t.Errorf("open slots after finish: %+v", open)
			}
			agreeNow(ctx, t, c, victim)
			if n := lost(ctx, t, c, keys); n != 0 {
				t.Fatalf("%d of %d keys unreadable after the %s failed over mid-migration and finish", n, len(keys), kill)
			}
			if got := slotsOf(ctx, t, c, wantDst); !slices.ContainsFunc(got, func(r topology.SlotRange) bool { return r.Start <= slot && slot <= r.End }) {
				t.Errorf("after finish slot %d is not on %s (it owns %s)", slot, wantDst, topology.FormatRanges(got))
			}
		})
	}
}
