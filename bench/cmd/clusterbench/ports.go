package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

// Client ports are picked from [portLow, portHigh) so that bus ports
// (+10000) stay below Linux's ephemeral range (32768+): outgoing
// connections can never hold them. The range also stays clear of 6379 and
// the 7000s that people and rcluster's default spec use.
const (
	portLow  = 21000
	portHigh = 22700
	busShift = 10000
)

// freeBlock finds n consecutive client ports whose bus ports are free too,
// probing by binding 127.0.0.1. It cannot reserve them: the window between
// probe and use is short, and a collision shows up as a failed run.
func freeBlock(n int) (int, error) {
	if n <= 0 || n > portHigh-portLow {
		return 0, fmt.Errorf("cannot place %d nodes in ports %d-%d", n, portLow, portHigh-1)
	}
	for attempt := 0; attempt < 200; attempt++ {
		base := portLow + rand.IntN(portHigh-portLow-n+1)
		if blockFree(base, n) {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no free block of %d ports (and +%d bus ports) in %d-%d", n, busShift, portLow, portHigh-1)
}

func blockFree(base, n int) bool {
	for p := base; p < base+n; p++ {
		for _, q := range []int{p, p + busShift} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				return false
			}
			l.Close()
		}
	}
	return true
}
