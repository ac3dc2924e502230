package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/rcluster/rcluster/bench/internal/benchstat"
)

// Sample is one alternating run: both paths on the same case, back to back.
type Sample struct {
	Run   int    `json:"run"`
	Order string `json:"order"`
	// BusyPct is how busy the host's CPUs were (0-100, all CPUs together)
	// in a short window just before each path (the higher of the two),
	// when nothing of ours was running: other work competing for the
	// CPUs inflates timings.
	BusyPct float64 `json:"host_busy_pct_before"`
	// TimeWait is the TCP sockets in TIME_WAIT just before each path (the
	// higher of the two; -1: unknown): see waitIdle.
	TimeWait int             `json:"time_wait_before"`
	Rcluster *RclusterSample `json:"rcluster,omitempty"`
	Hand     *HandSample     `json:"hand,omitempty"`
}

// Stats summarizes one measure over the runs that took it.
type Stats = benchstat.Stats

// CaseResult is every run of one case plus its summary.
type CaseResult struct {
	Name     string   `json:"name"`
	Nodes    int      `json:"nodes"`
	Replicas int      `json:"replicas"`
	Runs     int      `json:"runs"`
	Samples  []Sample `json:"samples"`

	Hand       *Stats `json:"hand,omitempty"`
	Up         *Stats `json:"rcluster_up,omitempty"`
	Down       *Stats `json:"rcluster_down,omitempty"`
	UpMaxRSSKB int64  `json:"rcluster_up_max_rss_kb,omitempty"`
	// Speedup is hand median / rcluster up median (>1: rcluster faster).
	Speedup float64 `json:"speedup,omitempty"`
	// NotUsableOnReturn counts runs where up returned before the cluster
	// was usable by the harness's definition.
	NotUsableOnReturn int `json:"not_usable_on_return"`
	HandErrors        int `json:"hand_errors"`
	RclusterErrors    int `json:"rcluster_errors"`
	// MaxBusyPct is the highest BusyPct of the case's runs.
	MaxBusyPct float64 `json:"max_host_busy_pct_before"`
}

func (c *CaseResult) summarize() {
	var hand, up, down []float64
	c.NotUsableOnReturn, c.HandErrors, c.RclusterErrors, c.UpMaxRSSKB = 0, 0, 0, 0
	c.MaxBusyPct = 0
	for _, s := range c.Samples {
		c.MaxBusyPct = max(c.MaxBusyPct, s.BusyPct)
		if h := s.Hand; h != nil {
			if h.Error != "" {
				c.HandErrors++
			} else {
				hand = append(hand, h.TotalMS)
			}
		}
		if r := s.Rcluster; r != nil {
			if r.UpMS > 0 {
				up = append(up, r.UpMS)
				if !r.UsableOnReturn {
					c.NotUsableOnReturn++
				}
			}
			if r.Error != "" {
				c.RclusterErrors++
			} else {
				down = append(down, r.DownMS)
			}
			c.UpMaxRSSKB = max(c.UpMaxRSSKB, r.UpMaxRSSKB)
		}
	}
	c.Hand, c.Up, c.Down = benchstat.Summarize(hand), benchstat.Summarize(up), benchstat.Summarize(down)
	c.Speedup = 0
	if c.Hand != nil && c.Up != nil && c.Up.MedianMS > 0 {
		c.Speedup = c.Hand.MedianMS / c.Up.MedianMS
	}
}

func fmtSec(v float64) string { return fmt.Sprintf("%.2fs", v/1000) }

func fmtStats(s *Stats) string {
	if s == nil {
		return "n/a"
	}
	if s.N == 1 {
		return fmtSec(s.MedianMS)
	}
	return fmt.Sprintf("%s (%.2f–%.2f)", fmtSec(s.MedianMS), s.MinMS/1000, s.MaxMS/1000)
}

// writeTable prints one line per case; rcluster columns say n/a when that
// path was skipped or never succeeded.
func writeTable(w io.Writer, cases []*CaseResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\truns\trcluster up median (min–max)\thand median (min–max)\tspeedup hand/rcluster\trcluster down median\trcluster up peak RSS\tper extra node")
	var notes []string
	base := perNodeBase(cases)
	for _, c := range cases {
		speed, rss := "n/a", "n/a"
		if c.Speedup > 0 {
			speed = fmt.Sprintf("%.2fx", c.Speedup)
		}
		if c.UpMaxRSSKB > 0 {
			rss = fmt.Sprintf("%.1f MiB", float64(c.UpMaxRSSKB)/1024)
		}
		down := "n/a"
		if c.Down != nil {
			down = fmtSec(c.Down.MedianMS)
		}
		perNode := "-"
		if ms, ok := msPerExtraNode(base, c); ok {
			perNode = fmt.Sprintf("%.1f ms", ms)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, len(c.Samples), fmtStats(c.Up), fmtStats(c.Hand), speed, down, rss, perNode)
		if c.HandErrors > 0 || c.RclusterErrors > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d hand and %d rcluster runs failed (see stderr / -json)", c.Name, c.HandErrors, c.RclusterErrors))
		}
		if c.MaxBusyPct > busyWarnPct {
			notes = append(notes, fmt.Sprintf("%s: host CPUs were up to %.0f%% busy with other work before a run: timings are inflated", c.Name, c.MaxBusyPct))
		}
		if c.NotUsableOnReturn > 0 {
			notes = append(notes, fmt.Sprintf("%s: rcluster up returned before the cluster was usable in %d runs", c.Name, c.NotUsableOnReturn))
		}
	}
	tw.Flush()
	if len(notes) > 0 {
		fmt.Fprintln(w, "notes:\n  "+strings.Join(notes, "\n  "))
	}
}

// perNodeBase is the case with the fewest nodes that has an rcluster up
// median: what "per extra node" is measured from (nil if none).
func perNodeBase(cases []*CaseResult) *CaseResult {
	var base *CaseResult
	for _, c := range cases {
		if c.Up != nil && (base == nil || c.Nodes < base.Nodes) {
			base = c
		}
	}
	return base
}

// msPerExtraNode is what each node past base's count added to the median
// up time: (median(c) - median(base)) / (nodes(c) - nodes(base)), in ms.
// Issue #6's target is at most 10 ms, Redis's 2s floor being in both.
func msPerExtraNode(base, c *CaseResult) (float64, bool) {
	if base == nil || c.Up == nil || c.Nodes <= base.Nodes {
		return 0, false
	}
	return (c.Up.MedianMS - base.Up.MedianMS) / float64(c.Nodes-base.Nodes), true
}

// Report is the -json document.
type Report struct {
	Started   string         `json:"started"`
	Host      benchstat.Host `json:"host"`
	Rcluster  string         `json:"rcluster"`
	SkipNote  string         `json:"rcluster_skipped,omitempty"`
	TimeoutS  float64        `json:"timeout_s"`
	Usable    string         `json:"usable_definition"`
	Cases     []*CaseResult  `json:"cases"`
	Completed bool           `json:"completed"`
}

// busyWarnPct is the pre-run host CPU use above which the table warns.
const busyWarnPct = 25
