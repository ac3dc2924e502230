// Package verify checks a live Redis Cluster: topology checks on every
// node's own view (each naming the node or slot at fault) and client checks
// that exercise what applications rely on, through go-redis.
package verify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/topology"
)

// Expect is what the cluster should look like; zero fields are not checked.
type Expect struct {
	Nodes    int
	Masters  int
	Replicas int // per master; -1 = don't check
}

// Options configure a run.
type Options struct {
	// Seeds are addresses to discover the cluster from (at least one).
	Seeds []string
	// Nodes, when set, are all the addresses the cluster must consist of
	// (from a spec); discovery still adds any node the cluster knows.
	Nodes  []string
	Expect Expect
	Conn   redisconn.Options
	// ReadOnly runs only checks that write nothing.
	ReadOnly bool
	// Skip names checks not to run.
	Skip []string
}

// Result is one check's outcome.
type Result struct {
	Name     string        `json:"name"`
	OK       bool          `json:"ok"`
	Duration time.Duration `json:"duration_ns"`
	Detail   string        `json:"detail,omitempty"`
	// Skipped: the check did not run (client checks after a topology
	// failure). It is neither passed nor failed; the report is not OK
	// anyway, because a topology check failed.
	Skipped bool `json:"skipped,omitempty"`
}

// Report is a whole run.
type Report struct {
	OK     bool     `json:"ok"`
	Checks []Result `json:"checks"`
	// Open lists the slots being migrated (MIGRATING on a source,
	// IMPORTING on a target), as the nodes themselves report them.
	Open []OpenSlot `json:"open_slots"`
}

// OpenSlot is one node's end of a slot migration.
type OpenSlot struct {
	Slot int    `json:"slot"`
	Node string `json:"node"`
	// State is "migrating" (Node is the source) or "importing" (the
	// target); Peer is the other end.
	State string `json:"state"`
	Peer  string `json:"peer"`
}

func slotsOf(m map[int]string) []int {
	out := make([]int, 0, len(m))
	for s := range m {
		out = append(out, s)
	}
	sort.Ints(out)
	return out
}

// openSlots reads every answering node's own line for open slots.
func openSlots(snap *Snapshot) []OpenSlot {
	out := []OpenSlot{}
	for _, v := range snap.OK() {
		peer := func(id string) string {
			if n, ok := topology.FindNode(v.Nodes, id); ok {
				return n.Addr
			}
			return id
		}
		for _, s := range slotsOf(v.Me.Migrating) {
			out = append(out, OpenSlot{Slot: s, Node: v.Addr, State: "migrating", Peer: peer(v.Me.Migrating[s])})
		}
		for _, s := range slotsOf(v.Me.Importing) {
			out = append(out, OpenSlot{Slot: s, Node: v.Addr, State: "importing", Peer: peer(v.Me.Importing[s])})
		}
	}
	return out
}

// Failed returns the failed checks (not the skipped ones).
func (r Report) Failed() []Result {
	var out []Result
	for _, c := range r.Checks {
		if !c.OK && !c.Skipped {
			out = append(out, c)
		}
	}
	return out
}

// Check is one named check.
type Check struct {
	Name string
	// Writes is true when the check writes keys or publishes.
	Writes bool
	// NeedsHealthy: skip (as failed) when the topology checks failed,
	// since client checks on a broken cluster only add noise.
	Client bool
	Run    func(ctx context.Context, e *Env) error
}

// Env is shared by the checks of one run.
type Env struct {
	Opts  Options
	Snap  *Snapshot
	RunID string
}

// Key returns a namespaced key for this run.
func (e *Env) Key(parts ...string) string {
	k := "rcluster:verify:" + e.RunID
	for _, p := range parts {
		k += ":" + p
	}
	return k
}

func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Run discovers the cluster, runs every check and returns the report.
// onResult, when non-nil, is called as each check finishes (for streaming
// output).
func Run(ctx context.Context, o Options, onResult func(Result)) Report {
	if onResult == nil {
		onResult = func(Result) {}
	}
	rep := Report{OK: true}
	add := func(r Result) {
		rep.Checks = append(rep.Checks, r)
		if !r.OK {
			rep.OK = false
		}
		onResult(r)
	}
	start := time.Now()
	snap, err := Gather(ctx, o)
	r := Result{Name: "nodes reachable", OK: err == nil, Duration: time.Since(start)}
	if err != nil {
		r.Detail = err.Error()
	}
	add(r)
	if snap == nil {
		return rep
	}
	rep.Open = openSlots(snap)
	env := &Env{Opts: o, Snap: snap, RunID: newRunID()}
	topoOK := true
	for _, c := range All() {
		if skipped(o, c) {
			continue
		}
		if c.Client && !topoOK {
			add(Result{Name: c.Name, Skipped: true, Detail: "not run: topology checks failed"})
			continue
		}
		r := runOne(ctx, c, env)
		if !c.Client && !r.OK {
			topoOK = false
		}
		add(r)
	}
	return rep
}

// RunWait runs the checks until they all pass or wait has passed (polling
// with backoff) and returns the last report. It ends within wait plus one
// call timeout (o.Conn.Timeout): every round runs under that deadline, so
// a round begun just before the wait is over cannot run on for a whole
// suite of timeouts. wait <= 0 is one Run.
func RunWait(ctx context.Context, o Options, wait time.Duration) Report {
	if wait <= 0 {
		return Run(ctx, o, nil)
	}
	callTimeout := o.Conn.Timeout
	if callTimeout <= 0 {
		callTimeout = 2 * time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	bound, cancelBound := context.WithTimeout(ctx, wait+callTimeout)
	defer cancelBound()
	b := poll.Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	for {
		rep := Run(bound, o, nil)
		if rep.OK || b.Wait(wctx) != nil {
			return rep
		}
	}
}

func skipped(o Options, c Check) bool {
	if o.ReadOnly && c.Writes {
		return true
	}
	for _, s := range o.Skip {
		if s == c.Name {
			return true
		}
	}
	return false
}

func runOne(ctx context.Context, c Check, env *Env) (r Result) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			r = Result{Name: c.Name, Detail: fmt.Sprintf("panic: %v", p)}
		}
		r.Duration = time.Since(start)
	}()
	err := c.Run(ctx, env)
	r = Result{Name: c.Name, OK: err == nil}
	if err != nil {
		r.Detail = err.Error()
	}
	return r
}

// All is every check, topology checks first.
func All() []Check {
	return append(topologyChecks(), clientChecks()...)
}

var errNoSeeds = errors.New("no node address to verify (give -f FILE or --addr HOST:PORT)")
