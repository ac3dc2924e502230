// Package benchstat is what rcluster's benchmark commands (clusterbench,
// opsbench) share: the summary of a measure over runs, and how busy the
// host is (they wait for an idle host before every timed step).
package benchstat

import (
	"context"
	"sort"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
)

// Stats summarizes the values of one measure, in milliseconds.
type Stats struct {
	N        int     `json:"n"`
	MedianMS float64 `json:"median_ms"`
	MinMS    float64 `json:"min_ms"`
	MaxMS    float64 `json:"max_ms"`
}

// Summarize returns the median (the mean of the middle two for an even
// count), min and max of v, or nil for no values.
func Summarize(v []float64) *Stats {
	if len(v) == 0 {
		return nil
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	mid := s[len(s)/2]
	if len(s)%2 == 0 {
		mid = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &Stats{N: len(s), MedianMS: mid, MinMS: s[0], MaxMS: s[len(s)-1]}
}

// BusyPercent is the share of all CPUs' time not idle (idle and iowait
// count as idle) over window, or -1 when it cannot be read or ctx ends
// first. gopsutil reads it on Linux and macOS alike.
func BusyPercent(ctx context.Context, window time.Duration) float64 {
	idle0, all0, ok := times(ctx)
	if !ok {
		return -1
	}
	t := time.NewTimer(window)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return -1
	case <-t.C:
	}
	idle1, all1, ok := times(ctx)
	if !ok {
		return -1
	}
	return busyBetween(idle0, all0, idle1, all1)
}

// busyBetween is the busy share between two readings of the cumulative
// idle and total CPU seconds, or -1 when no time passed. The counters are
// sums of float seconds, so a fully idle window can come out a hair below
// 0 (and a fully busy one above 100): it is clamped, never reported as
// the -1 that means "unknown".
func busyBetween(idle0, all0, idle1, all1 float64) float64 {
	if all1 <= all0 {
		return -1
	}
	return min(100, max(0, 100*(1-(idle1-idle0)/(all1-all0))))
}

func times(ctx context.Context) (idle, all float64, ok bool) {
	ts, err := cpu.TimesWithContext(ctx, false)
	if err != nil || len(ts) == 0 {
		return 0, 0, false
	}
	t := ts[0]
	idle = t.Idle + t.Iowait
	all = t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
	return idle, all, true
}
