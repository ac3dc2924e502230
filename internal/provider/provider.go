// Package provider is how rcluster runs nodes: one interface, in the
// spirit of kind's providers, implemented by local redis-server processes
// (process), Docker containers (docker) and nodes someone else runs
// (external). The lifecycle (internal/cluster) is written once against it;
// no code outside this package asks which runtime a spec uses.
package provider

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/slots"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/statedir"
)

// NodeState is one node as its provider sees it.
type NodeState struct {
	Node spec.Node
	// Running: the node's unit (process, container, remote server) exists
	// and runs, proven to be this node (a pidfile naming a stranger is
	// not running).
	Running bool
	// Responding: it answered PING.
	Responding bool
	// Paused: it runs but is frozen on purpose (SIGSTOP, docker pause).
	Paused bool
	// Partitioned: it runs but is cut off the other nodes' network on
	// purpose (Partition); Heal reconnects it.
	Partitioned bool
	// Unproven: a live process may be this node but its identity cannot
	// be proven (another user's process): not Running, yet not stopped
	// either; nothing acts on it.
	Unproven bool
	// Pid is the node's process id where the provider knows it (0 else).
	Pid int
	// Detail explains the state ("stale pidfile: ...", "container x", ...).
	Detail string
}

// StopResult is what stopping did to one node.
type StopResult struct {
	Addr string
	// Action is "shutdown", "sigterm", "sigkill", "stopped", "removed" or
	// "not running".
	Action string
	Pid    int
	// Unit names the container, when there is one.
	Unit   string
	Detail string
	Err    error
}

// Line is the result as one line of `down -v`.
func (r StopResult) Line() string {
	line := fmt.Sprintf("  %s: %s", r.Addr, r.Action)
	switch {
	case r.Unit != "":
		line += fmt.Sprintf(" (container %s)", r.Unit)
	case r.Pid > 0:
		line += fmt.Sprintf(" (pid %d)", r.Pid)
	}
	if r.Detail != "" {
		line += ": " + r.Detail
	}
	if r.Err != nil {
		line += ": " + r.Err.Error()
	}
	return line
}

// Provider runs one spec's nodes. Every method that acts on nodes is
// bounded by ctx and names the node in its errors.
type Provider interface {
	// Name is the spec's runtime: process, docker or external.
	Name() string
	// StartStep and UndoStep are the progress lines of Start and Undo of n
	// nodes; Describe ends the "is up" line ("on 127.0.0.1:7001-7003").
	StartStep(n int) string
	UndoStep(n int) string
	Describe() string

	// Preflight checks, before anything is started, what would make
	// starting these nodes fail (binary, ports, state dir, engine), and
	// reports every problem at once as a *PreflightError. It returns what
	// will run them ("/usr/bin/redis-server (Redis 7.0.15)").
	Preflight(ctx context.Context, nodes []spec.Node) (string, error)
	// Prepare writes what the nodes need to start: configs, certificates,
	// the image.
	Prepare(ctx context.Context) error
	// Inspect reports every spec node, in spec order, without changing
	// anything.
	Inspect(ctx context.Context) ([]NodeState, error)
	// Serving reports whether each address of the spec was answered by
	// that node's own unit, given who answered there (INFO server's
	// process_id and tcp_port, in spec order): up's one-round-trip proof
	// that a healthy-looking cluster is this one.
	Serving(ctx context.Context, answered []slots.Server) bool
	// Start starts nodes and returns when each answers PING; when it
	// fails it has stopped what it started of them.
	Start(ctx context.Context, nodes []spec.Node) error
	// Undo removes what Start started (a failed up).
	Undo(ctx context.Context, nodes []spec.Node) error
	// StopAll stops every node the provider runs for the spec's state dir
	// gracefully (data kept), plus extra (nodes the saved state lists but
	// the spec no longer does). Nodes already down are results, not errors.
	StopAll(ctx context.Context, extra []spec.Node) ([]StopResult, error)
	// Summary says in a few words what StopAll did ("3 stopped").
	Summary(res []StopResult) string
	// NodesFile is the node's nodes.conf on this machine, or "" when the
	// node's cluster state is not rcluster's to read.
	NodesFile(n spec.Node) string
	// Close releases the provider's resources.
	Close() error

	// Faults on one node, for testing what clients see when the cluster
	// changes. Each acts only on a unit proven to be that node, returns
	// once its effect is visible, and fails with ErrNotOurs on nodes
	// rcluster did not start.
	//
	// Kill ends the node as a crash would (SIGKILL, docker kill).
	Kill(ctx context.Context, n spec.Node) error
	// StopNode stops it gracefully (SHUTDOWN: data kept).
	StopNode(ctx context.Context, n spec.Node) error
	// StartNode starts a stopped or killed node again with its data and
	// returns when it answers PING.
	StartNode(ctx context.Context, n spec.Node) error
	// Pause freezes it (SIGSTOP, docker pause): it accepts connections
	// but answers nothing, a hung node.
	Pause(ctx context.Context, n spec.Node) error
	// Resume undoes Pause and returns when the node answers PING.
	Resume(ctx context.Context, n spec.Node) error
	// Partition cuts the node off the other nodes' network; Heal
	// reconnects it.
	Partition(ctx context.Context, n spec.Node) error
	Heal(ctx context.Context, n spec.Node) error
}

// Options are what every provider needs.
type Options struct {
	// Conn is how to talk to the nodes.
	Conn redisconn.Options
	// Log receives detail lines (may be nil).
	Log io.Writer
}

func (o Options) log() io.Writer {
	if o.Log == nil {
		return io.Discard
	}
	return o.Log
}

// For returns the provider of s's runtime.
func For(ctx context.Context, s *spec.Spec, o Options) (Provider, error) {
	switch s.Runtime {
	case "", spec.RuntimeProcess:
		return &Process{spec: s, o: o}, nil
	case spec.RuntimeDocker:
		return openDocker(ctx, s, o)
	case spec.RuntimeExternal:
		return &External{spec: s, o: o}, nil
	}
	return nil, fmt.Errorf("runtime %q: no such runtime (process, docker, external)", s.Runtime)
}

// Layout is what rcluster may create in s's state dir for its runtime
// (statedir.Claim records it, statedir.Purge removes it): nodes rcluster
// runs keep their configs, logs and data there; external nodes nothing.
func Layout(s *spec.Spec) statedir.Layout {
	if s.RuntimeName() == spec.RuntimeExternal {
		return statedir.BaseLayout()
	}
	return statedir.NodeLayout(s)
}

// LogFile is where node n of s writes its log on this machine, or "" when
// rcluster keeps no log of it (external nodes).
func LogFile(s *spec.Spec, n spec.Node) string {
	if s.RuntimeName() == spec.RuntimeExternal {
		return ""
	}
	return s.LogFile(n.Port) // processes write it; containers have the log dir mounted
}

// PreflightError lists every reason nodes could not be started; nothing
// was started.
type PreflightError struct {
	Problems []error
}

func (e *PreflightError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = "  " + indentLines(p.Error())
	}
	return "preflight failed, nothing was started:\n" + joinLines(lines)
}

func (e *PreflightError) Unwrap() []error { return e.Problems }

func preflightErr(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return &PreflightError{Problems: errs}
}

// ErrNotOurs is returned for operations rcluster may not do to nodes it
// did not start (runtime external).
var ErrNotOurs = errors.New("runtime external: rcluster did not start this node and does not kill, stop, start or pause it")

// ErrNoPartition is returned by Partition and Heal where the runtime's
// nodes share one network stack.
var ErrNoPartition = errors.New("cannot cut one node off the network")

func indentLines(s string) string {
	out := []byte{}
	for i := 0; i < len(s); i++ {
		out = append(out, s[i])
		if s[i] == '\n' {
			out = append(out, ' ', ' ')
		}
	}
	return string(out)
}

func joinLines(lines []string) string {
	out := ""
	for i, l := range lines {
		if i > 0 {
			out += "\n"
		}
		out += l
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
