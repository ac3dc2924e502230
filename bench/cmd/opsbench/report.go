package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rcluster/rcluster/bench/internal/benchstat"
)

// Sample is one run of one case: every measure it took, in ms from the
// start of the timed step that measure belongs to.
type Sample struct {
	Run   int                `json:"run"`
	Order string             `json:"order,omitempty"`
	Ports string             `json:"ports"`
	Load  hostLoad           `json:"host_before"` // the worst before any timed step
	MS    map[string]float64 `json:"ms"`
	// Notes are what the harness saw that a reader of the figures should
	// know (e.g. rcluster returned before every node agreed).
	Notes []string `json:"notes,omitempty"`
	Error string   `json:"error,omitempty"`
}

func (s *Sample) set(key string, d time.Duration) {
	if s.MS == nil {
		s.MS = map[string]float64{}
	}
	s.MS[key] = float64(d) / float64(time.Millisecond)
}

func (s *Sample) note(format string, args ...any) {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

// Part is one measure of a case and how the tables name it.
type Part struct {
	Key   string `json:"key"`
	Label string `json:"label"`
}

// Target is a figure an issue asks for: the median of Key at most (or,
// with AtLeast, at least) MS; or, with Over set, the median of Key at
// least Times the median of Over (issue 14's "5x faster").
type Target struct {
	Key     string  `json:"key"`
	MS      float64 `json:"ms,omitempty"`
	AtLeast bool    `json:"at_least,omitempty"`
	Over    string  `json:"over,omitempty"`
	Times   float64 `json:"times,omitempty"`
	// Label names a ratio target in the tables ("redis-cli/rcluster").
	Label string `json:"label,omitempty"`
	// Met is set once there is a median to judge.
	Met *bool `json:"met,omitempty"`
}

func (t Target) String() string {
	if t.Over != "" {
		return fmt.Sprintf("≥ %.1fx", t.Times)
	}
	op := "≤"
	if t.AtLeast {
		op = "≥"
	}
	return fmt.Sprintf("%s %s", op, fmtSec(t.MS))
}

// judge says whether the target is met by stats (nil: nothing to judge).
func (t Target) judge(stats map[string]*Stats) *bool {
	st := stats[t.Key]
	if st == nil {
		return nil
	}
	var met bool
	switch {
	case t.Over != "":
		o := stats[t.Over]
		if o == nil || o.MedianMS <= 0 {
			return nil
		}
		met = st.MedianMS >= t.Times*o.MedianMS
	case t.AtLeast:
		met = st.MedianMS >= t.MS
	default:
		met = st.MedianMS <= t.MS
	}
	return &met
}

// Stats summarizes one measure over the runs that took it.
type Stats = benchstat.Stats

// CaseResult is every run of one case plus its summary.
type CaseResult struct {
	Name          string `json:"name"`
	NodeTimeoutMS int64  `json:"cluster_node_timeout_ms"`
	// Rcluster and Hand are the keys of the two main columns; HandWay
	// says what the hand column does.
	Rcluster string    `json:"rcluster_key"`
	Hand     string    `json:"hand_key"`
	HandWay  string    `json:"hand_way"`
	Parts    []Part    `json:"parts"`
	Targets  []*Target `json:"targets"`
	Samples  []*Sample `json:"samples"`

	Stats  map[string]*Stats `json:"stats,omitempty"`
	Errors int               `json:"errors"`
	// Ratio is the hand median over the rcluster median.
	Ratio float64 `json:"hand_over_rcluster,omitempty"`
}

// finish computes the stats, the ratio and whether each target is met.
func (c *CaseResult) finish() {
	vals := map[string][]float64{}
	c.Errors = 0
	for _, s := range c.Samples {
		if s.Error != "" {
			c.Errors++
		}
		for k, v := range s.MS {
			vals[k] = append(vals[k], v)
		}
	}
	c.Stats = map[string]*Stats{}
	for k, v := range vals {
		c.Stats[k] = benchstat.Summarize(v)
	}
	c.Ratio = 0
	if r, h := c.Stats[c.Rcluster], c.Stats[c.Hand]; r != nil && h != nil && r.MedianMS > 0 {
		c.Ratio = h.MedianMS / r.MedianMS
	}
	for _, t := range c.Targets {
		t.Met = t.judge(c.Stats)
	}
}

// fmtSec renders milliseconds as seconds: three decimals below 1 s (these
// operations take tens of milliseconds), two above.
func fmtSec(ms float64) string {
	if ms < 1000 {
		return fmt.Sprintf("%.3fs", ms/1000)
	}
	return fmt.Sprintf("%.2fs", ms/1000)
}

func fmtStats(s *Stats) string {
	if s == nil {
		return "n/a"
	}
	if s.N == 1 {
		return fmtSec(s.MedianMS)
	}
	f := "%.2f–%.2f"
	if s.MedianMS < 1000 {
		f = "%.3f–%.3f"
	}
	return fmtSec(s.MedianMS) + " (" + fmt.Sprintf(f, s.MinMS/1000, s.MaxMS/1000) + ")"
}

// labelOf is key's label among the case's parts.
func (c *CaseResult) labelOf(key string) string {
	for _, p := range c.Parts {
		if p.Key == key {
			return p.Label
		}
	}
	return key
}

func (c *CaseResult) targetText() string {
	var parts []string
	for _, t := range c.Targets {
		verdict := "n/a"
		if t.Met != nil {
			verdict = "MISSED"
			if *t.Met {
				verdict = "met"
			}
		}
		who := "rcluster"
		switch {
		case t.Over != "":
			who = t.Label
			if st, o := c.Stats[t.Key], c.Stats[t.Over]; st != nil && o != nil && o.MedianMS > 0 {
				who += fmt.Sprintf(" = %.1fx,", st.MedianMS/o.MedianMS)
			}
		case t.Key != c.Rcluster:
			who = c.labelOf(t.Key)
		}
		parts = append(parts, fmt.Sprintf("%s %s: %s", who, t, verdict))
	}
	return strings.Join(parts, "; ")
}

// writeTables prints the main table (rcluster against the hand way, one
// line per case), what each hand way is, then every measured part.
func writeTables(w io.Writer, cases []*CaseResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\truns\trcluster median (min–max)\thand way median (min–max)\thand/rcluster\ttarget (median)")
	for _, c := range cases {
		ratio := "n/a"
		if c.Ratio > 0 {
			ratio = fmt.Sprintf("%.2fx", c.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", c.Name, len(c.Samples), fmtStats(c.Stats[c.Rcluster]), fmtStats(c.Stats[c.Hand]), ratio, c.targetText())
	}
	tw.Flush()
	fmt.Fprintln(w, "\nrcluster and hand way, per case:")
	for _, c := range cases {
		fmt.Fprintf(w, "  %s: rcluster = %s; hand way = %s\n", c.Name, c.labelOf(c.Rcluster), c.HandWay)
	}
	fmt.Fprintln(w, "\nparts (ms from the start of their timed step):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\tmeasure\tmedian (min–max)")
	for _, c := range cases {
		name := c.Name
		for _, p := range c.Parts {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", name, p.Label, fmtStats(c.Stats[p.Key]))
			name = ""
		}
	}
	tw.Flush()
	var notes []string
	for _, c := range cases {
		if c.Errors > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d of %d runs failed (see stderr / -json)", c.Name, c.Errors, len(c.Samples)))
		}
		busy := 0.0
		for _, s := range c.Samples {
			busy = max(busy, s.Load.BusyPct)
			for _, n := range s.Notes {
				notes = append(notes, fmt.Sprintf("%s run %d: %s", c.Name, s.Run, n))
			}
		}
		if busy >= quietBusyPct {
			notes = append(notes, fmt.Sprintf("%s: the host was up to %.0f%% busy before a timed step: figures are inflated", c.Name, busy))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nnotes:\n  "+strings.Join(notes, "\n  "))
	}
}

// Report is the -json document.
type Report struct {
	Started   string         `json:"started"`
	Host      benchstat.Host `json:"host"`
	Rcluster  string         `json:"rcluster"`
	Runs      int            `json:"runs"`
	Keys      int            `json:"keys"`
	PollMS    float64        `json:"hand_poll_pause_ms"`
	Cases     []*CaseResult  `json:"cases"`
	Completed bool           `json:"completed"`
}
