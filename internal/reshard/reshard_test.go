package reshard

import (
	"slices"
	"testing"

	"github.com/rcluster/rcluster/internal/topology"
)

func TestMasters(t *testing.T) {
	text := "" +
		id(7003) + " 127.0.0.1:7003@17003 master - 0 0 3 connected 10923-12000 12001-16383\n" +
		id(7004) + " 127.0.0.1:7004@17004 slave " + id(7001) + " 0 0 1 connected\n" +
		id(7001) + " 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460\n" +
		id(7002) + " 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922\n" +
		id(7010) + " 127.0.0.1:7010@17010 master - 0 0 0 connected\n" +
		"0123456789012345678901234567890123456789 127.0.0.1:7011@17011 handshake - 0 0 0 connected\n"
	view, err := topology.ParseNodes(text)
	if err != nil {
		t.Fatal(err)
	}
	got := Masters(view)
	var ports []int
	for _, x := range got {
		_, p := splitAddr(x.Addr)
		ports = append(ports, p)
	}
	if !slices.Equal(ports, []int{7001, 7002, 7003, 7010}) {
		t.Fatalf("masters = %v, want 7001 7002 7003 7010 in address order (no replica, no handshake)", ports)
	}
	if r := got[0].Replicas; len(r) != 1 || r[0].ID != id(7004) || r[0].Addr != addr(7004) {
		t.Errorf("7001's replicas = %v, want 7004", r)
	}
	if f := topology.FormatRanges(got[2].Slots); f != "10923-16383" {
		t.Errorf("7003's slots = %s, want merged 10923-16383", f)
	}
	if got[2].Empty() || got[2].SlotCount() != 5461 || !got[3].Empty() {
		t.Errorf("Empty/SlotCount: 7003 %d slots empty=%v, 7010 empty=%v", got[2].SlotCount(), got[2].Empty(), got[3].Empty())
	}
}

// redis-cli's documented case: 3 masters as --cluster create makes them,
// 5461 slots from all to the first. The sources are sorted by slot count
// (7002 has 5462, one more than 7003): 7002 gives ceil(5461/10923*5462) =
// 2731 and 7003 floor(2730.25) = 2730, each its lowest slots.
func TestReshardFromAll(t *testing.T) {
	ms := threeMasters()
	for _, from := range [][]string{nil, {"all"}, {id(7003), "all"}} {
		moves, err := Reshard(ms, from, id(7001), 5461)
		if err != nil {
			t.Fatal(err)
		}
		counts := checkPlan(t, ms, moves)
		if len(moves) != 5461 {
			t.Fatalf("from %v: %d moves, want 5461", from, len(moves))
		}
		if got := movedFrom(moves, 7002, 7001); got != "5461-8191" {
			t.Errorf("from %v: 7002 gives %s, want 5461-8191", from, got)
		}
		if got := movedFrom(moves, 7003, 7001); got != "10923-13652" {
			t.Errorf("from %v: 7003 gives %s, want 10923-13652", from, got)
		}
		if counts[7001] != 10922 || counts[7002] != 2731 || counts[7003] != 2731 {
			t.Errorf("from %v: counts after = %v", from, counts)
		}
		// Grouped by source in table order (7002 first), slots ascending.
		if moves[0] != (Move{Slot: 5461, From: id(7002), To: id(7001)}) || moves[2731].Slot != 10923 {
			t.Errorf("from %v: order: first %v, 2732nd %v", from, moves[0], moves[2731])
		}
	}
}

func TestReshardShortfallToppedUp(t *testing.T) {
	ms := []Master{m(7001, 0, 4095), m(7002, 4096, 8191), m(7003, 8192, 12287), m(7004, 12288, 16383), m(7005)}
	c, err := load(ms)
	if err != nil {
		t.Fatal(err)
	}
	srcs, err := c.sources(nil, 4)
	if err != nil {
		t.Fatal(err)
	}
	// redis-cli's table: 10/16384*4096 = 2.5 -> 3, 2, 2, 2 = 9 slots.
	if table := c.reshardTable(srcs, 10); !slices.Equal(table, []int{3, 2, 2, 2}) {
		t.Fatalf("redis-cli table = %v, want [3 2 2 2]", table)
	}
	moves, err := Reshard(ms, nil, id(7005), 10)
	if err != nil {
		t.Fatal(err)
	}
	counts := checkPlan(t, ms, moves)
	if len(moves) != 10 || counts[7005] != 10 {
		t.Fatalf("%d moves, target has %d slots; want exactly 10", len(moves), counts[7005])
	}
	// The top-up slot comes from the first source, its next-lowest.
	for port, want := range map[int]string{7001: "0-3", 7002: "4096-4097", 7003: "8192-8193", 7004: "12288-12289"} {
		if got := movedFrom(moves, port, 7005); got != want {
			t.Errorf("%d gives %s, want %s", port, got, want)
		}
	}
}

func TestReshardSourcesSortedByCount(t *testing.T) {
	ms := []Master{m(7001, 0, 999), m(7002, 1000, 2999), m(7003, 3000, 16383)}
	// Listed smallest first; 7002 (2000 slots) still goes first:
	// 100/3000*2000 = 66.7 -> 67, then 7001 33.3 -> 33.
	for _, from := range [][]string{{id(7001), id(7002)}, {id(7002), id(7001)}} {
		moves, err := Reshard(ms, from, id(7003), 100)
		if err != nil {
			t.Fatal(err)
		}
		checkPlan(t, ms, moves)
		if a, b := movedFrom(moves, 7002, 7003), movedFrom(moves, 7001, 7003); a != "1000-1066" || b != "0-32" {
			t.Errorf("from %v: 7002 gives %s (want 1000-1066), 7001 gives %s (want 0-32)", from, a, b)
		}
		if moves[0].From != id(7002) {
			t.Errorf("from %v: first move from %s, want 7002's", from, moves[0].From)
		}
	}
	// Case-insensitive ids, as redis-cli; the moves carry the master's id.
	moves, err := Reshard(ms, []string{"7001AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, id(7003), 1000)
	if err != nil || len(moves) != 1000 || moves[0].From != id(7001) {
		t.Errorf("upper-case id: %d moves, err %v", len(moves), err)
	}
}

func TestReshardUnevenSlotsAfterEarlierMoves(t *testing.T) {
	// A source's slots need not be one range: it gives its lowest.
	ms := []Master{m(7001, 0, 9, 100, 109, 5000, 5000), m(7002, 10, 99, 110, 4999, 5001, 16383)}
	moves, err := Reshard(ms, []string{id(7001)}, id(7002), 15)
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, ms, moves)
	if got := movedFrom(moves, 7001, 7002); got != "0-9,100-104" {
		t.Errorf("7001 gives %s, want 0-9,100-104", got)
	}
}

func TestReshardBadInput(t *testing.T) {
	ms := threeMasters()
	ms[0] = withReplica(ms[0], 7004)
	for _, tc := range []struct {
		name string
		from []string
		to   string
		n    int
		want []string
	}{
		{"unknown target", nil, "deadbeef", 10, []string{"deadbeef", "no master", addr(7001), addr(7003)}},
		{"unknown source", []string{"deadbeef"}, id(7001), 10, []string{"source", "deadbeef"}},
		{"replica target", nil, id(7004), 10, []string{"target", addr(7004), "replica of", addr(7001)}},
		{"replica source", []string{id(7004)}, id(7002), 10, []string{"source", addr(7004), "replica"}},
		{"from equals to", []string{id(7002)}, id(7002), 10, []string{addr(7002), "also the target"}},
		{"to among sources", []string{id(7003), id(7002)}, id(7002), 10, []string{addr(7002), "also the target"}},
		{"source twice", []string{id(7003), id(7003)}, id(7002), 10, []string{addr(7003), "twice"}},
		{"zero slots", nil, id(7001), 0, []string{"slot count 0"}},
		{"negative slots", nil, id(7001), -5, []string{"-5"}},
		{"more than the sources own", []string{id(7003)}, id(7001), 5462, []string{"5462", "5461", addr(7003)}},
		{"more than 16384", nil, id(7001), 20000, []string{"20000", "10923"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			moves, err := Reshard(ms, tc.from, tc.to, tc.n)
			if moves != nil {
				t.Errorf("moves = %d, want none", len(moves))
			}
			wantBadInput(t, err, tc.want...)
		})
	}
	if _, err := Reshard([]Master{m(7001, 0, 16383)}, nil, id(7001), 1); err == nil {
		t.Error("a single master as target of all: no error")
	} else {
		wantBadInput(t, err, "only master")
	}
}

func TestLoadBadTopology(t *testing.T) {
	for _, tc := range []struct {
		name string
		ms   []Master
		want []string
	}{
		{"slot owned twice", []Master{m(7001, 0, 100), m(7002, 100, 16383)}, []string{"slot 100", addr(7001), addr(7002)}},
		{"slot listed twice", []Master{m(7001, 0, 10, 5, 16383)}, []string{addr(7001), "slot 5 twice"}},
		{"slot out of range", []Master{m(7001, 0, 16384)}, []string{addr(7001), "0-16384"}},
		{"duplicate id", []Master{m(7001, 0, 10), {ID: id(7001), Addr: addr(7002)}}, []string{id(7001), "twice"}},
		{"replica id is a master's", []Master{withReplica(m(7001, 0, 10), 7002), m(7002, 11, 20)}, []string{id(7002), "twice"}},
		{"no id", []Master{{Addr: addr(7001)}}, []string{addr(7001), "no node id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Reshard(tc.ms, nil, id(7001), 1)
			wantBadInput(t, err, tc.want...)
		})
	}
}

func TestApplyRejectsAMoveFromANonOwner(t *testing.T) {
	ms := threeMasters()
	_, err := Apply(ms, []Move{{Slot: 0, From: id(7001), To: id(7002)}, {Slot: 0, From: id(7001), To: id(7003)}})
	wantBadInput(t, err, "move 1", "slot 0", addr(7001))
	after, err := Apply(ms, []Move{{Slot: 0, From: id(7001), To: id(7002)}, {Slot: 0, From: id(7002), To: id(7003)}})
	if err != nil {
		t.Fatal(err)
	}
	if got := topology.FormatRanges(after[2].Slots); got != "0,10923-16383" || topology.FormatRanges(after[0].Slots) != "1-5460" {
		t.Errorf("after: 7001 %s, 7003 %s", topology.FormatRanges(after[0].Slots), got)
	}
}
