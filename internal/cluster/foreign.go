package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rcluster/rcluster/internal/confgen"
	"github.com/rcluster/rcluster/internal/slots"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/statedir"
)

// Runtimes other than process ("foreign" here: docker, external) share one
// lifecycle, written against nodeRuntime; Up, Down and NodeStatuses hand
// them over at their first line.

// nodeState is one node as a runtime sees it.
type nodeState struct {
	node       spec.Node
	running    bool // the runtime's unit (container, remote server) exists and runs
	responding bool // answered PING
	pid        int
	detail     string
}

// nodeRuntime is how the foreign lifecycle starts, inspects and stops nodes.
type nodeRuntime interface {
	// what names the runtime's units in messages ("containers", "nodes").
	what() string
	// startStep is the progress line of start(n nodes).
	startStep(n int) string
	inspect(ctx context.Context) ([]nodeState, error)
	// start prepares (image, configs) and starts nodes; it starts nothing
	// when any preparation fails.
	start(ctx context.Context, nodes []spec.Node) error
	// undo removes what start started (a failed up).
	undo(ctx context.Context, nodes []spec.Node) error
	// stopAll stops everything the runtime runs for the spec, reporting
	// one line per node, and how many it stopped.
	stopAll(ctx context.Context) (lines []string, stopped int, err error)
	close()
}

// foreign reports whether the spec's nodes are not local processes.
func (c *Cluster) foreign() bool { return c.Spec.IsDocker() || c.Spec.IsExternal() }

func (c *Cluster) openRuntime(ctx context.Context) (nodeRuntime, error) {
	switch {
	case c.Spec.IsDocker():
		return c.openDocker(ctx)
	case c.Spec.IsExternal():
		return &externalRuntime{spec: c.Spec, conn: c.Conn}, nil
	}
	return nil, fmt.Errorf("runtime %q has no foreign lifecycle", c.Spec.Runtime)
}

// upForeign is Up for runtimes docker and external.
func (c *Cluster) upForeign(ctx context.Context, o UpOptions) error {
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	s := c.Spec
	// MEET needs IPs, and the saved state compares addresses (a no-op for
	// specs the CLI already resolved).
	if err := s.ResolveHosts(ctx, nil); err != nil {
		return err
	}
	newDir := !statedir.Exists(s.Dir)
	lockMade := !statedir.Exists(filepath.Join(s.Dir, statedir.LockFile))
	unlock, err := lock(ctx, s.Dir, c.lockWait())
	if err != nil {
		return err
	}
	defer unlock()
	saved, err := c.readState()
	if err != nil {
		return err
	}
	if saved != nil {
		if d := diffState(*saved, c.wantState()); len(d) > 0 {
			return &ConflictError{Dir: s.Dir, Diffs: d}
		}
	}
	state, err := c.claim(saved, newDir, lockMade)
	if err != nil {
		return err
	}
	if s.IsDocker() && s.TLS != nil {
		// Generated certificates must exist before the runtime's client
		// (which speaks TLS to the nodes) is made.
		if err := confgen.EnsureTLS(s); err != nil {
			return err
		}
		if err := c.refreshConn(); err != nil {
			return err
		}
	}
	rt, err := c.openRuntime(ctx)
	if err != nil {
		return err
	}
	defer rt.close()
	if err := c.bringUp(ctx, rt, o); err != nil {
		return err
	}
	return c.saveFormed(state)
}

// bringUp is the heart of up on a foreign runtime: start what is missing,
// then form the cluster (all nodes fresh) or wait for it to be healthy.
func (c *Cluster) bringUp(ctx context.Context, rt nodeRuntime, o UpOptions) (err error) {
	st := c.status()
	s := c.Spec
	addrs := s.Addrs()
	st.Start(fmt.Sprintf("Inspecting %d %s", len(addrs), rt.what()))
	states, err := rt.inspect(ctx)
	st.End(err == nil)
	if err != nil {
		return err
	}
	var missing []spec.Node
	var frozen []string
	for _, ns := range states {
		switch {
		case !ns.running:
			missing = append(missing, ns.node)
		case !ns.responding:
			frozen = append(frozen, fmt.Sprintf("%s (%s)", ns.node.Addr(), ns.detail))
		}
	}
	if len(frozen) > 0 {
		return fmt.Errorf("%s %s running but not answering; nothing was started; fix or stop %s first",
			strings.Join(frozen, ", "), isAre(len(frozen)), itThem(len(frozen)))
	}
	if len(missing) == 0 {
		qctx, qcancel := context.WithTimeout(ctx, time.Second)
		werr := slots.WaitReady(qctx, addrs, len(addrs), c.Conn)
		qcancel()
		if werr == nil {
			st.Infof("Cluster %q is already up and healthy (%d nodes); nothing to do.", s.Name, len(addrs))
			return nil
		}
	}
	if s.IsDocker() {
		// Containers keep nodes.conf in the state dir, as processes do:
		// refuse nodes whose saved or live state does not fit the others'
		// before starting any. (External nodes' files are not ours to read.)
		responding := make([]bool, len(states))
		for i, ns := range states {
			responding[i] = ns.responding
		}
		if _, merr := c.membership(ctx, responding); merr != nil {
			return merr
		}
	}

	var started []spec.Node
	forming := false
	defer func() {
		if err == nil || len(started) == 0 {
			return
		}
		if o.Retain {
			st.Infof("Leaving the %d %s started by this run running (--retain).", len(started), rt.what())
			return
		}
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer ccancel()
		st.Start(fmt.Sprintf("Removing the %d %s this run started", len(started), rt.what()))
		uerr := rt.undo(cctx, started)
		st.End(uerr == nil)
		if uerr != nil {
			err = errors.Join(err, fmt.Errorf("undoing this run: %w", uerr))
			return
		}
		if forming {
			// A half-formed cluster must not look like a saved one to the
			// next up: these nodes were fresh.
			for _, n := range started {
				if rerr := os.Remove(s.NodesFile(n.Port)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
					err = errors.Join(err, fmt.Errorf("node %s: reset cluster state: %w", n.Addr(), rerr))
				}
			}
		}
	}()
	if len(missing) > 0 {
		// Containers start masters first, for the reason Cluster.start
		// gives; external nodes are only reached, all at once, so that
		// every unreachable one is named.
		waves := [][]spec.Node{missing}
		if s.IsDocker() {
			waves = mastersFirst(s, missing)
		}
		st.Start(rt.startStep(len(missing)))
		serr := startWaves(waves, &started, func(wave []spec.Node) error { return rt.start(ctx, wave) })
		st.End(serr == nil)
		if serr != nil {
			return serr
		}
	}

	begin := func(what string) { st.Start(what) }
	if err := c.formOrWait(ctx, addrs, begin, "Waiting for the cluster to become healthy", func() { forming = true }); err != nil {
		return err
	}
	st.Infof("Cluster %q is up: %d nodes (%s).", s.Name, len(addrs), c.describeRuntime())
	return nil
}

func (c *Cluster) describeRuntime() string {
	s := c.Spec
	switch {
	case s.IsDocker():
		return fmt.Sprintf("containers of %s on %s:%d-%d; stop them with `rcluster down`", s.Image, s.Host, slices.Min(s.Ports), slices.Max(s.Ports))
	case s.IsExternal():
		return "runtime external: " + strings.Join(s.Addrs(), " ")
	}
	return s.Runtime
}

func writePlan(w io.Writer, p *slots.Plan) {
	for _, sh := range p.Shards {
		reps := make([]string, len(sh.Replicas))
		for i, r := range sh.Replicas {
			reps[i] = r.Addr()
		}
		line := fmt.Sprintf("  master %s slots %d-%d", sh.Master.Addr(), sh.Slots.Start, sh.Slots.End)
		if len(reps) > 0 {
			line += ", replicas " + strings.Join(reps, " ")
		}
		fmt.Fprintln(w, line)
	}
}

// downForeign is Down for runtimes docker and external.
func (c *Cluster) downForeign(ctx context.Context, purge bool) error {
	st := c.status()
	s := c.Spec
	dirExists := c.hasState()
	if dirExists {
		unlock, err := lock(ctx, s.Dir, c.lockWait())
		if err != nil {
			return err
		}
		defer unlock()
	}
	rt, err := c.openRuntime(ctx)
	if err != nil {
		return err
	}
	defer rt.close()
	st.Start(fmt.Sprintf("Stopping the cluster's %s", rt.what()))
	lines, stopped, err := rt.stopAll(ctx)
	st.End(err == nil)
	for _, l := range lines {
		fmt.Fprintln(c.log(), l)
	}
	if err != nil {
		return err
	}
	summary := fmt.Sprintf("%d %s stopped and removed", stopped, rt.what())
	if s.IsExternal() {
		summary = fmt.Sprintf("runtime external: rcluster did not start its %d nodes and leaves them running", len(s.Nodes()))
	}
	if !dirExists {
		st.Infof("Cluster %q: %s; it has no state in %s.", s.Name, summary, s.Dir)
		return nil
	}
	if !purge {
		st.Infof("Cluster %q: %s; state kept in %s (`rcluster up` brings it back, `down --purge` deletes it).", s.Name, summary, s.Dir)
		return nil
	}
	saved, err := c.readState()
	if err != nil {
		return err
	}
	return c.purge(saved, summary)
}

// foreignStatuses is NodeStatuses for runtimes docker and external.
func (c *Cluster) foreignStatuses(ctx context.Context) []NodeStatus {
	nodes := c.Spec.Nodes()
	out := make([]NodeStatus, len(nodes))
	for i, n := range nodes {
		out[i] = NodeStatus{Addr: n.Addr(), Port: n.Port}
	}
	rt, err := c.openRuntime(ctx)
	var states []nodeState
	if err == nil {
		defer rt.close()
		states, err = rt.inspect(ctx)
	}
	if err != nil {
		for i := range out {
			out[i].Detail = err.Error()
		}
		return out
	}
	var wg sync.WaitGroup
	for i, ns := range states {
		out[i].Running, out[i].Pid, out[i].Detail = ns.running, ns.pid, ns.detail
		if !ns.responding {
			continue
		}
		wg.Go(func() {
			detail := out[i].Detail
			c.fillStatus(ctx, &out[i])
			if out[i].Detail == "" {
				out[i].Detail = detail
			}
		})
	}
	wg.Wait()
	return out
}
