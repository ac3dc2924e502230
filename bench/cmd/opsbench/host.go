package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rcluster/rcluster/bench/internal/benchstat"
)

// A 2-core machine is shared with whatever else runs on it, and the
// operations timed here last tens of milliseconds: one compile in the
// background doubles them. Each timed step therefore starts only once the
// host has been quiet for a short window (or the wait gives up, and the
// sample records how busy it was).

const (
	// quietBusyPct is the CPU use (all CPUs together, percent) below which
	// the host counts as quiet.
	quietBusyPct = 25
	// quietTimeWait is the TIME_WAIT socket count below which it does:
	// many leftover loopback sockets slow every new connection down.
	quietTimeWait = 2000
	// quietWindow is how long one CPU measurement lasts.
	quietWindow = 300 * time.Millisecond
)

// hostLoad is what the host looked like just before a timed step.
type hostLoad struct {
	BusyPct  float64 `json:"host_busy_pct"`
	TimeWait int     `json:"time_wait"`
}

// worse keeps the higher of each figure.
func (h hostLoad) worse(o hostLoad) hostLoad {
	return hostLoad{BusyPct: max(h.BusyPct, o.BusyPct), TimeWait: max(h.TimeWait, o.TimeWait)}
}

// waitQuiet measures the host in quietWindow slices until it is quiet or
// limit has passed (limit 0: one measurement, no waiting), and returns the
// last measurement.
func waitQuiet(ctx context.Context, limit time.Duration) hostLoad {
	deadline := time.Now().Add(limit)
	for {
		h := hostLoad{BusyPct: benchstat.BusyPercent(ctx, quietWindow), TimeWait: timeWaitCount()}
		quiet := h.BusyPct < quietBusyPct && h.TimeWait < quietTimeWait
		if quiet || limit <= 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return h
		}
	}
}

// timeWaitCount is the "tw" figure of /proc/net/sockstat plus sockstat6
// (IPv4 and IPv6 TCP sockets in TIME_WAIT), or -1 when neither is readable.
func timeWaitCount() int {
	n, seen := 0, false
	for _, path := range []string{"/proc/net/sockstat", "/proc/net/sockstat6"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			rest, ok := strings.CutPrefix(line, "TCP: ")
			if !ok {
				rest, ok = strings.CutPrefix(line, "TCP6: ")
			}
			if !ok {
				continue
			}
			f := strings.Fields(rest)
			for i := 0; i+1 < len(f); i += 2 {
				if f[i] != "tw" {
					continue
				}
				if v, err := strconv.Atoi(f[i+1]); err == nil {
					n, seen = n+v, true
				}
			}
		}
	}
	if !seen {
		return -1
	}
	return n
}
