package reshard

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/rcluster/rcluster/internal/topology"
)

// id is a fake 40-character node id that shows the port it belongs to.
func id(port int) string { return fmt.Sprintf("%04d", port) + strings.Repeat("a", 36) }

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// m builds a master on port with slot ranges given as start,end pairs.
func m(port int, ranges ...int) Master {
	x := Master{ID: id(port), Addr: addr(port)}
	for i := 0; i+1 < len(ranges); i += 2 {
		x.Slots = append(x.Slots, topology.SlotRange{Start: ranges[i], End: ranges[i+1]})
	}
	return x
}

func withReplica(x Master, port int) Master {
	x.Replicas = append(x.Replicas, Replica{ID: id(port), Addr: addr(port)})
	return x
}

// threeMasters is the layout `redis-cli --cluster create` makes for 3 masters.
func threeMasters() []Master {
	return []Master{m(7001, 0, 5460), m(7002, 5461, 10922), m(7003, 10923, 16383)}
}

// checkPlan asserts the properties every plan has: each move's From owns
// the slot at that point (Apply checks it), no slot moves twice, no move
// goes to its own source, and the slot total is unchanged. It returns the
// slot count of each master (by port) after the moves.
func checkPlan(t *testing.T, masters []Master, moves []Move) map[int]int {
	t.Helper()
	seen := map[int]bool{}
	for k, mv := range moves {
		if seen[mv.Slot] {
			t.Fatalf("move %d: slot %d moves twice", k, mv.Slot)
		}
		seen[mv.Slot] = true
		if mv.From == mv.To {
			t.Fatalf("move %d: slot %d from %s to itself", k, mv.Slot, mv.From)
		}
	}
	after, err := Apply(masters, moves)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	before, total := 0, 0
	for _, x := range masters {
		before += x.SlotCount()
	}
	counts := map[int]int{}
	for _, x := range after {
		_, p := splitAddr(x.Addr)
		counts[p] = x.SlotCount()
		total += x.SlotCount()
	}
	if total != before {
		t.Fatalf("slots after the moves: %d, before: %d", total, before)
	}
	return counts
}

// movedFrom returns the slots moved from the master on port to the one on
// port to, as ranges ("5461-8191").
func movedFrom(moves []Move, from, to int) string {
	var s []int
	for _, mv := range moves {
		if mv.From == id(from) && mv.To == id(to) {
			s = append(s, mv.Slot)
		}
	}
	slices.Sort(s)
	var r []topology.SlotRange
	for _, x := range s {
		if k := len(r); k > 0 && r[k-1].End == x-1 {
			r[k-1].End = x
		} else {
			r = append(r, topology.SlotRange{Start: x, End: x})
		}
	}
	return topology.FormatRanges(r)
}

// spread is max-min of the counts of the given ports.
func spread(counts map[int]int, ports ...int) int {
	lo, hi := 1<<30, -1
	for _, p := range ports {
		lo, hi = min(lo, counts[p]), max(hi, counts[p])
	}
	return hi - lo
}

// wantBadInput asserts err wraps ErrBadInput and names every word in want.
func wantBadInput(t *testing.T, err error, want ...string) {
	t.Helper()
	if !errors.Is(err, ErrBadInput) {
		t.Fatalf("err = %v, want one wrapping ErrBadInput", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
}
