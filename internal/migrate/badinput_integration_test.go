package migrate

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/topology"
)

// Test 5: bad moves are refused with ErrBadMove before anything changes,
// even when a valid move comes first; a cluster with an open slot is
// refused too; Finish and Abort with nothing open change nothing.
func TestBadInputChangesNothing(t *testing.T) {
	c := startCluster(t, 6, 1)
	ctx := testCtx(t, 60*time.Second)
	data := c.fill(2000)
	before := c.dbsize()
	vs, _ := c.views()
	sig := topology.SlotSignature(vs[c.addrs[0]])
	ms := c.masters()
	a, b := ms[0], ms[1]
	var replica topology.Node
	for _, n := range vs[c.addrs[0]] {
		if n.IsReplica() {
			replica = n
			break
		}
	}
	if replica.ID == "" {
		t.Fatal("no replica in the cluster")
	}
	slotOfA := a.Slots[0].Start
	valid := Move{Slot: slotOfA, From: a.ID, To: b.ID}
	cases := map[string][]Move{
		"slot -1":           {{Slot: -1, To: b.ID}},
		"slot 16384":        {{Slot: topology.SlotCount, To: b.ID}},
		"unknown target":    {{Slot: slotOfA, To: strings.Repeat("0", 40)}},
		"unknown source":    {{Slot: slotOfA, From: strings.Repeat("1", 40), To: b.ID}},
		"replica target":    {{Slot: slotOfA, To: replica.ID}},
		"from equals to":    {{Slot: slotOfA, From: b.ID, To: b.ID}},
		"from not owner":    {{Slot: slotOfA, From: b.ID, To: a.ID}},
		"slot twice":        {valid, valid},
		"valid then bad":    {valid, {Slot: slotOfA + 1, To: replica.ID}},
		"from equals owner": {{Slot: slotOfA, From: a.ID, To: a.ID}},
	}
	unchanged := func(what string) {
		t.Helper()
		vs, _ := c.views()
		for _, addr := range c.addrs {
			if got := topology.SlotSignature(vs[addr]); got != sig {
				t.Errorf("%s: %s: slot owners changed to %s", what, addr, got)
			}
			if me, _ := topology.Myself(vs[addr]); len(me.OpenSlots()) > 0 {
				t.Errorf("%s: %s: open slots %v", what, addr, me.OpenSlots())
			}
		}
		if n := c.dbsize(); n != before {
			t.Errorf("%s: %d keys, %d before", what, n, before)
		}
	}
	for name, moves := range cases {
		res, err := Migrate(ctx, c.addrs, c.conn, moves, Options{})
		if !errors.Is(err, ErrBadMove) {
			t.Errorf("%s: err = %v, want ErrBadMove", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
		if res == nil || len(res.Moves) != 0 {
			t.Errorf("%s: result %v, want nothing done", name, res)
		}
		unchanged(name)
	}
	// Moving a slot to its owner without naming From is nothing to do.
	if res, err := Migrate(ctx, c.addrs, c.conn, []Move{{Slot: slotOfA, To: a.ID}}, Options{}); err != nil || len(res.Moves) != 0 {
		t.Errorf("move to the owner: %v, %v; want nothing done, no error", res, err)
	}
	unchanged("move to the owner")

	// An open slot: Migrate refuses, naming it, and touches nothing.
	other := c.other(a.ID, b.ID)
	if err := c.client(other.Addr).Do(ctx, "CLUSTER", "SETSLOT", slotOfA, "IMPORTING", a.ID).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := Migrate(ctx, c.addrs, c.conn, []Move{{Slot: slotOfA + 1, To: b.ID}}, Options{})
	if err == nil || errors.Is(err, ErrBadMove) || !strings.Contains(err.Error(), "importing") {
		t.Errorf("migrate with an open slot: %v, want a refusal naming the importing slot", err)
	}
	if err := c.client(other.Addr).Do(ctx, "CLUSTER", "SETSLOT", slotOfA, "STABLE").Err(); err != nil {
		t.Fatal(err)
	}
	unchanged("open slot")

	for name, f := range map[string]func() (*Result, error){
		"finish": func() (*Result, error) { return Finish(ctx, c.addrs, c.conn, Options{}) },
		"abort":  func() (*Result, error) { return Abort(ctx, c.addrs, c.conn, Options{}) },
	} {
		if res, err := f(); err != nil || len(res.Moves) != 0 {
			t.Errorf("%s with nothing open: %v, %v", name, res, err)
		}
		unchanged(name)
	}
	if open, err := Open(ctx, c.addrs, c.conn); err != nil || len(open) != 0 {
		t.Errorf("open: %v, %v", open, err)
	}
	c.assertData(data)
}
