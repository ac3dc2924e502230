package migrate

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/topology"
)

// holdSlot holds slot open from src to dst and returns the keys that moved
// and the ones that stayed, as the two nodes list them.
func (c *tc) holdSlot(slot int, src, dst topology.Node, data map[string]string) (moved, stayed []string) {
	c.t.Helper()
	ctx := testCtx(c.t, 30*time.Second)
	res, err := Migrate(ctx, c.addrs, c.conn, []Move{{Slot: slot, From: src.ID, To: dst.ID}}, Options{Hold: true})
	if err != nil {
		c.t.Fatalf("migrate --hold slot %d: %v", slot, err)
	}
	n := int64(len(data))
	if res.Keys != n/2 || len(res.Moves) != 1 {
		c.t.Errorf("hold: %v, want 1 slot and %d keys moved", res, n/2)
	}
	moved, err = c.client(dst.Addr).ClusterGetKeysInSlot(ctx, slot, 1000).Result()
	if err != nil {
		c.t.Fatal(err)
	}
	stayed, err = c.client(src.Addr).ClusterGetKeysInSlot(ctx, slot, 1000).Result()
	if err != nil {
		c.t.Fatal(err)
	}
	if int64(len(moved)) != n/2 || int64(len(stayed)) != n-n/2 {
		c.t.Fatalf("after hold: %d keys on the target, %d on the source; want %d and %d", len(moved), len(stayed), n/2, n-n/2)
	}
	return moved, stayed
}

// assertHeld checks the open state on both nodes and as Open reports it.
func (c *tc) assertHeld(slot int, src, dst topology.Node, srcKeys, dstKeys int64) {
	c.t.Helper()
	if got := c.me(src.Addr).Migrating[slot]; got != dst.ID {
		c.t.Errorf("source: slot %d migrating to %q, want %s", slot, got, dst.ID)
	}
	if got := c.me(dst.Addr).Importing[slot]; got != src.ID {
		c.t.Errorf("target: slot %d importing from %q, want %s", slot, got, src.ID)
	}
	open, err := Open(testCtx(c.t, 10*time.Second), c.addrs, c.conn)
	if err != nil {
		c.t.Fatal(err)
	}
	want := OpenSlot{Slot: slot, Migrating: true, Importing: true, SourceKeys: srcKeys, TargetKeys: dstKeys}
	want.Source.ID, want.Source.Addr, want.Target.ID, want.Target.Addr = src.ID, src.Addr, dst.ID, dst.Addr
	if len(open) != 1 || open[0] != want {
		c.t.Errorf("Open = %v\nwant [%v]", open, want)
	}
}

// Test 3: with a slot held open, a plain client gets ASK from the source
// for a moved key, a cluster client reads and writes every key, a
// multi-key command over moved and unmoved keys gets TRYAGAIN; Finish then
// completes it. Separately, Hold then Abort puts every key back.
func TestHoldThenFinishOrAbort(t *testing.T) {
	c := startCluster(t, 3, 0)
	ctx := testCtx(t, 60*time.Second)
	const slot = 100
	data := c.fillSlot(slot, 10)
	before := c.dbsize()
	src := c.ownerOf(slot)
	dst := c.other(src.ID)
	moved, stayed := c.holdSlot(slot, src, dst, data)
	c.assertHeld(slot, src, dst, 5, 5)

	plain := c.client(src.Addr) // no ASKING, no redirects followed
	err := plain.Get(ctx, moved[0]).Err()
	if want := fmt.Sprintf("ASK %d %s", slot, dst.Addr); err == nil || err.Error() != want {
		t.Errorf("plain GET of moved key %s on the source: %v, want %q", moved[0], err, want)
	}
	if v, err := plain.Get(ctx, stayed[0]).Result(); err != nil || v != data[stayed[0]] {
		t.Errorf("plain GET of unmoved key %s on the source: %.20q, %v", stayed[0], v, err)
	}
	if err := plain.MGet(ctx, moved[0], stayed[0]).Err(); err == nil || !strings.HasPrefix(err.Error(), "TRYAGAIN") {
		t.Errorf("plain MGET of a moved and an unmoved key on the source: %v, want TRYAGAIN", err)
	}
	c.assertData(data) // the cluster client follows ASK for every moved key
	for k := range data {
		data[k] = "rewritten:" + k
		if err := c.cc.Set(ctx, k, data[k], 0).Err(); err != nil {
			t.Errorf("cluster client SET %s while held: %v", k, err)
		}
	}
	c.assertData(data)
	// New keys of a held slot are created on the target.
	nk := fmt.Sprintf("{%s}:new", topology.KeyForSlot(slot))
	data[nk] = "new"
	if err := c.cc.Set(ctx, nk, "new", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n := countIn(t, c.client(dst.Addr), slot); n != 6 {
		t.Errorf("target holds %d keys of the held slot, want 6 (5 moved + 1 new)", n)
	}

	res, err := Finish(ctx, c.addrs, c.conn, Options{})
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	t.Logf("finish: %v", res)
	if len(res.Moves) != 1 || res.Moves[0] != (Move{Slot: slot, From: src.ID, To: dst.ID}) {
		t.Errorf("finish moves %v", res.Moves)
	}
	c.assertAgreed()
	if o := c.ownerOf(slot); o.ID != dst.ID {
		t.Errorf("slot %d owned by %s after finish, want %s", slot, o.Addr, dst.Addr)
	}
	if after := c.dbsize(); after != before+1 {
		t.Errorf("%d keys after finish, want %d", after, before+1)
	}
	c.assertData(data)

	// Hold then Abort: every key back on the source, the slot closed.
	const slot2 = 200
	data2 := c.fillSlot(slot2, 10)
	src2 := c.ownerOf(slot2)
	dst2 := c.other(src2.ID)
	c.holdSlot(slot2, src2, dst2, data2)
	c.assertHeld(slot2, src2, dst2, 5, 5)
	res, err = Abort(ctx, c.addrs, c.conn, Options{})
	if err != nil {
		t.Fatalf("abort: %v", err)
	}
	t.Logf("abort: %v", res)
	if len(res.Moves) != 1 || res.Moves[0] != (Move{Slot: slot2, From: dst2.ID, To: src2.ID}) {
		t.Errorf("abort moves %v", res.Moves)
	}
	c.assertAgreed()
	if o := c.ownerOf(slot2); o.ID != src2.ID {
		t.Errorf("slot %d owned by %s after abort, want %s", slot2, o.Addr, src2.Addr)
	}
	if n := countIn(t, c.client(src2.Addr), slot2); n != 10 {
		t.Errorf("source holds %d keys of slot %d after abort, want 10", n, slot2)
	}
	if n := countIn(t, c.client(dst2.Addr), slot2); n != 0 {
		t.Errorf("target holds %d keys of slot %d after abort, want 0", n, slot2)
	}
	c.assertData(data2)
	c.assertData(data)
}

// An origin whose only slot is held open gets its keys back in place
// (moving the slot forward would turn it into a replica): the keys end
// on it, it is still a master owning the slot, and nothing is open.
func TestAbortInPlaceLastSlot(t *testing.T) {
	c := startCluster(t, 3, 0)
	ctx := testCtx(t, 60*time.Second)
	a := c.ownerOf(0)
	b := c.other(a.ID)
	rest := c.other(a.ID, b.ID)
	// Leave a with slot 0 only.
	if _, err := Migrate(ctx, c.addrs, c.conn, rangeMoves(1, 5460, a.ID, rest.ID), Options{}); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	data := c.fillSlot(0, 10)
	a = c.ownerOf(0)
	if got := topology.FormatRanges(a.Slots); got != "0" {
		t.Fatalf("a owns %s, want 0", got)
	}
	moved, _ := c.holdSlot(0, a, b, data)
	// A client rewrites a moved key (on the target, after ASK) meanwhile.
	movedKey := moved[0]
	data[movedKey] = "written-while-held"
	if err := c.cc.Set(ctx, movedKey, data[movedKey], 0).Err(); err != nil {
		t.Fatal(err)
	}
	res, err := Abort(ctx, c.addrs, c.conn, Options{})
	if err != nil {
		t.Fatalf("abort: %v", err)
	}
	t.Logf("abort in place: %v", res)
	if res.Keys != 5 {
		t.Errorf("abort moved %d keys, want the 5 on the target moved back in place", res.Keys)
	}
	c.assertAgreed()
	me := c.me(a.Addr)
	if !me.IsMaster() || topology.FormatRanges(me.Slots) != "0" {
		t.Errorf("origin after abort: %v owning %s, want a master owning 0", me.Flags, topology.FormatRanges(me.Slots))
	}
	if n := countIn(t, c.client(a.Addr), 0); n != 10 {
		t.Errorf("origin holds %d keys of slot 0, want 10", n)
	}
	c.assertData(data)
}

// Several held slots from one origin that owns nothing else: all but one
// travel forward and back, then the last one.
func TestAbortEveryOpenSlotOfAnOrigin(t *testing.T) {
	c := startCluster(t, 3, 0)
	ctx := testCtx(t, 60*time.Second)
	a := c.ownerOf(0)
	b := c.other(a.ID)
	rest := c.other(a.ID, b.ID)
	if _, err := Migrate(ctx, c.addrs, c.conn, rangeMoves(3, 5460, a.ID, rest.ID), Options{}); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	data := map[string]string{}
	for s := range 3 {
		for k, v := range c.fillSlot(s, 6) {
			data[k] = v
		}
	}
	if _, err := Migrate(ctx, c.addrs, c.conn, rangeMoves(0, 2, a.ID, b.ID), Options{Hold: true}); err != nil {
		t.Fatalf("hold: %v", err)
	}
	open, err := Open(ctx, c.addrs, c.conn)
	if err != nil || len(open) != 3 {
		t.Fatalf("open: %v, %v", open, err)
	}
	res, err := Abort(ctx, c.addrs, c.conn, Options{})
	if err != nil {
		t.Fatalf("abort: %v", err)
	}
	t.Logf("abort: %v", res)
	c.assertAgreed()
	me := c.me(a.Addr)
	if !me.IsMaster() || topology.FormatRanges(topology.MergeRanges(me.Slots)) != "0-2" {
		t.Errorf("origin after abort: %v owning %s, want a master owning 0-2", me.Flags, topology.FormatRanges(me.Slots))
	}
	for s := range 3 {
		if n := countIn(t, c.client(a.Addr), s); n != 6 {
			t.Errorf("origin holds %d keys of slot %d, want 6", n, s)
		}
	}
	c.assertData(data)
}

// Abort of 1000 held slots under a continuous read/write load on them:
// zero acknowledged writes lost, zero nil reads (the forward-then-back
// path; see Abort).
func TestAbortUnderLoad(t *testing.T) {
	c := startCluster(t, 3, 0)
	seed := c.fill(20000)
	before := c.dbsize()
	src := c.ownerOf(0)
	dst := c.other(src.ID)
	ctx := testCtx(t, 90*time.Second)
	if _, err := Migrate(ctx, c.addrs, c.conn, rangeMoves(0, 999, src.ID, dst.ID), Options{Hold: true}); err != nil {
		t.Fatalf("hold: %v", err)
	}
	w := newWorkload(c, 8, seed, 0, 999)
	stop := make(chan struct{})
	wait := w.run(ctx, stop, 200000)
	b := poll.Backoff{Min: time.Millisecond, Max: 20 * time.Millisecond}
	for w.stats.writes.Load() < 500 {
		if b.Wait(ctx) != nil {
			t.Fatal("workload never got going")
		}
	}
	w.running.Store(true)
	res, err := Abort(ctx, c.addrs, c.conn, Options{})
	w.running.Store(false)
	close(stop)
	wait()
	if err != nil {
		t.Fatalf("abort: %v", err)
	}
	t.Logf("abort: %v; workload: %d acknowledged writes, %d reads, %d ops during the abort, %d client errors (retried)",
		res, w.stats.writes.Load(), w.stats.reads.Load(), w.stats.during.Load(), w.stats.errs.Load())
	if w.stats.during.Load() < 1000 {
		t.Errorf("only %d operations ran during the abort: the test did not exercise it", w.stats.during.Load())
	}
	c.assertAgreed()
	for _, m := range c.masters() {
		if m.ID == src.ID && topology.FormatRanges(topology.MergeRanges(m.Slots)) != "0-5460" {
			t.Errorf("origin owns %s after abort, want 0-5460", topology.FormatRanges(m.Slots))
		}
	}
	lost, total := w.lost(t)
	if n := w.stats.nilReads.Load(); n != 0 {
		t.Errorf("%d reads of an acknowledged key returned nil (want zero)", n)
	}
	if n := w.stats.stale.Load(); n != 0 {
		t.Errorf("%d reads of an acknowledged key returned an older value (want zero)", n)
	}
	if lost != 0 {
		t.Errorf("%d of %d acknowledged keys lost or wrong after the abort (want zero)", lost, total)
	}
	if got, want := c.dbsize(), before+w.stats.created.Load(); got < want || got > want+int64(len(w.unsure)) {
		t.Errorf("%d keys in the cluster, want %d", got, want)
	}
	t.Logf("zero loss: %d acknowledged keys all read back with their last acknowledged value; 0 nil reads, 0 stale reads", total)
}
