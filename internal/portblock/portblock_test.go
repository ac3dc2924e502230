package portblock

import (
	"errors"
	"net"
	"os"
	"testing"

	"github.com/rcluster/rcluster/internal/spec"
)

// lockOnly is a reserver with its own lock dir whose ports always look
// free, so only the locks decide.
func lockOnly(t *testing.T) reserver {
	return reserver{dir: t.TempDir(), free: func(int, int) bool { return true }}
}

// A held block refuses every other block that shares a ten-port group with
// it, and none that does not. The held block 10005-10014 spans the groups
// 10000 and 10010: a block inside the second group only (10012-10014) must
// be refused too, which locking base's group alone would not do.
func TestHeldBlockRefusesEveryOverlappingGroup(t *testing.T) {
	r := lockOnly(t)
	release, err := r.try(10005, 10)
	if err != nil {
		t.Fatalf("first block: %v", err)
	}
	for _, c := range []struct{ base, n int }{
		{10012, 3}, {10019, 1}, {10000, 1}, {9995, 6}, {10010, 10}, {9990, 30},
	} {
		if rel, err := r.try(c.base, c.n); !errors.Is(err, errBusy) {
			if rel != nil {
				rel()
			}
			t.Errorf("block %d+%d shares a group with the held 10005+10: err = %v, want busy", c.base, c.n, err)
		}
	}
	for _, c := range []struct{ base, n int }{{9990, 10}, {10020, 5}} {
		rel, err := r.try(c.base, c.n)
		if err != nil {
			t.Errorf("block %d+%d shares no group with the held one: %v", c.base, c.n, err)
			continue
		}
		rel()
	}
	release()
	rel, err := r.try(10012, 3)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	rel()
}

// Blocks handed out while others are held never share a group.
func TestReserveNeverHandsOutSharedGroups(t *testing.T) {
	r := lockOnly(t)
	held := map[int]int{} // group -> base of the block holding it
	for i := range 40 {
		n := 1 + i%13
		base, release, err := r.reserve(n)
		if err != nil {
			t.Fatalf("reserve %d (block %d): %v", n, i, err)
		}
		t.Cleanup(release)
		if base < low || base+n > high {
			t.Fatalf("block %d+%d outside %d-%d", base, n, low, high-1)
		}
		for g := base / group * group; g < base+n; g += group {
			if other, ok := held[g]; ok {
				t.Fatalf("block %d+%d shares group %d with block at %d", base, n, g, other)
			}
			held[g] = base
		}
	}
}

// A block whose bus port is taken is refused even though nobody holds its
// locks.
func TestBusyBusPortRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	bus := l.Addr().(*net.TCPAddr).Port
	r := reserver{dir: t.TempDir(), free: portsFree}
	if rel, err := r.try(bus-spec.BusPortOffset, 1); !errors.Is(err, errBusy) {
		if rel != nil {
			rel()
		}
		t.Fatalf("client port %d with bus port %d in use: err = %v, want busy", bus-spec.BusPortOffset, bus, err)
	}
	// The refusal released its lock: the same group can be locked again.
	r.free = func(int, int) bool { return true }
	rel, err := r.try(bus-spec.BusPortOffset, 1)
	if err != nil {
		t.Fatalf("lock after refusal: %v", err)
	}
	rel()
}

func TestReserveRejectsBadSize(t *testing.T) {
	for _, n := range []int{0, -1, MaxPorts + 1} {
		if _, _, err := Reserve(n); err == nil {
			t.Errorf("Reserve(%d) succeeded", n)
		}
	}
}

// Reserve's locks are the shared ones in os.TempDir that other test
// processes check.
func TestReserveHoldsSharedLocks(t *testing.T) {
	base, release, err := Reserve(3)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	other := reserver{dir: os.TempDir(), free: func(int, int) bool { return true }}
	if rel, err := other.try(base+2, 1); !errors.Is(err, errBusy) {
		if rel != nil {
			rel()
		}
		t.Fatalf("port %d of the reserved block %d+3 locked again: err = %v, want busy", base+2, base, err)
	}
}
