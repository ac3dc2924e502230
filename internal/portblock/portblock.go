// Package portblock reserves blocks of consecutive local client ports, with
// their cluster bus ports, for tests that start real redis-server nodes.
// Test binaries of different packages run side by side (go test runs
// packages in parallel), so a block is held with flock'ed lock files, one
// per ten-port group, that every reserver in every process honours.
package portblock

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/rcluster/rcluster/internal/spec"
)

const (
	// Client ports come from [low, high): their bus ports (20000-29999)
	// stay below Linux's ephemeral range (32768+), so outgoing
	// connections can never hold them.
	low  = 10000
	high = 20000
	// group is the width of the port range one lock file covers.
	group = 10
	// MaxPorts bounds a block: larger ones would rarely find room.
	MaxPorts = 1000
	// attempts bounds the random search for a free block.
	attempts = 200
)

// errBusy says a candidate block is locked by someone else or has a port
// in use.
var errBusy = errors.New("port block busy")

// Reserve finds n consecutive free client ports whose bus ports
// (+spec.BusPortOffset) are free too, and locks every ten-port group the
// block touches. It returns the first port and a release func that drops
// the locks; call it when the nodes on the block are gone.
func Reserve(n int) (base int, release func(), err error) {
	return reserver{dir: os.TempDir(), free: portsFree}.reserve(n)
}

// reserver holds what tests replace: where the lock files live and how a
// port is probed.
type reserver struct {
	dir  string
	free func(base, n int) bool
}

func (r reserver) reserve(n int) (int, func(), error) {
	if n < 1 || n > MaxPorts {
		return 0, nil, fmt.Errorf("port block of %d ports: want 1..%d", n, MaxPorts)
	}
	for range attempts {
		base := low + rand.IntN(high-low-n+1)
		release, err := r.try(base, n)
		if err == nil {
			return base, release, nil
		}
		if !errors.Is(err, errBusy) {
			return 0, nil, err
		}
	}
	return 0, nil, fmt.Errorf("no free block of %d ports (and +%d bus ports) in %d-%d after %d attempts",
		n, spec.BusPortOffset, low, high-1, attempts)
}

// try locks every group that [base, base+n) touches and then checks that
// the ports are free. It returns errBusy when a lock is held elsewhere or a
// port is in use; on any error it holds nothing.
func (r reserver) try(base, n int) (func(), error) {
	var locks []*os.File
	release := func() {
		for _, f := range locks {
			f.Close()
		}
	}
	for g := base / group * group; g < base+n; g += group {
		path := filepath.Join(r.dir, fmt.Sprintf("rcluster-test-port-%d.lock", g))
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			release()
			return nil, fmt.Errorf("port lock: %w", err)
		}
		locks = append(locks, f)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			release()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, errBusy
			}
			return nil, fmt.Errorf("port lock %s: %w", path, err)
		}
	}
	if !r.free(base, n) {
		release()
		return nil, errBusy
	}
	return release, nil
}

// portsFree reports whether every client port of the block and its bus
// port can be bound on 127.0.0.1 now.
func portsFree(base, n int) bool {
	for p := base; p < base+n; p++ {
		for _, q := range []int{p, p + spec.BusPortOffset} {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(q)))
			if err != nil {
				return false
			}
			l.Close()
		}
	}
	return true
}
