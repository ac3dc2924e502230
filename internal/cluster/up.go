package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rcluster/rcluster/internal/events"
	"github.com/rcluster/rcluster/internal/provider"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/slots"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/statedir"
	"github.com/rcluster/rcluster/internal/topology"
)

// UpOptions tune Up.
type UpOptions struct {
	// Timeout bounds the whole of up (default 60s).
	Timeout time.Duration
	// Retain keeps nodes started by a failed run (for debugging).
	Retain bool
}

// Up brings the cluster to healthy, on any runtime, in ordered steps on one
// context bounded by o.Timeout:
//
//  1. lock the state dir; refuse a spec that no longer matches the saved
//     cluster, and a runtime switch while nodes of the old runtime run;
//     record what this run may create (statedir.Claim);
//  2. nothing to do when the cluster already runs healthy (one round trip
//     per node);
//  3. inspect the nodes; refuse frozen ones; preflight what must start
//     (every problem at once); refuse nodes whose saved or live cluster
//     state does not fit the others' (membership);
//  4. prepare (configs, certificates, image) and start the missing nodes,
//     masters first;
//  5. form a cluster of fresh nodes, or wait for a formed one to re-form.
//
// On failure or cancellation it stops (removes) what this run started,
// unless o.Retain, and a half-formed cluster's nodes.conf goes with it.
func (c *Cluster) Up(ctx context.Context, o UpOptions) (err error) {
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	st := c.status()
	s := c.Spec
	step := "checking the nodes"
	begin := func(msg string) {
		step = msg
		st.Start(msg)
	}
	defer func() {
		switch cerr := ctx.Err(); {
		case err == nil || cerr == nil:
		case errors.Is(cerr, context.Canceled):
			// SIGINT/SIGTERM: what each step made of it is noise.
			err = fmt.Errorf("interrupted during %q: %w", step, cerr)
		case !errors.Is(err, cerr):
			err = fmt.Errorf("%w (gave up after %s: %w)", err, o.Timeout, cerr)
		}
	}()
	// MEET needs IPs, and the saved state compares addresses (a no-op for
	// nodes given as IPs).
	if err := s.ResolveHosts(ctx, nil); err != nil {
		return err
	}

	newDir := !statedir.Exists(s.Dir)
	lockMade := !statedir.Exists(filepath.Join(s.Dir, statedir.LockFile))
	unlock, err := lock(ctx, s.Dir, c.lockWait())
	if err != nil {
		if errors.Is(err, ErrLocked) || ctx.Err() != nil {
			return err
		}
		// The state dir itself is the problem: report what else would
		// have stopped the start (the binary) too.
		problems := []error{err}
		if prov, perr := c.provider(ctx); perr == nil {
			if _, ferr := prov.Preflight(ctx, nil); ferr != nil {
				var pe *PreflightError
				if errors.As(ferr, &pe) {
					problems = append(problems, pe.Problems...)
				}
			}
			prov.Close()
		}
		return &PreflightError{Problems: problems}
	}
	defer func() {
		// A failed first up (preflight, bad binary, busy ports) leaves no
		// state dir behind that `down` or `ls` would take for a cluster.
		if err != nil && newDir {
			removeBareStateDir(s.Dir)
		}
		unlock()
	}()

	saved, err := c.readState()
	if err != nil {
		return err
	}
	scaling := false
	if saved != nil {
		if d := diffState(*saved, c.wantState()); len(d) > 0 {
			if !scalable(*saved, c.wantState()) {
				return &ConflictError{Dir: s.Dir, Diffs: d}
			}
			scaling = true // ports and/or replicas: reshape the running cluster
		}
		if err := c.checkRuntimeSwitch(ctx, saved); err != nil {
			return err
		}
	}
	state, err := c.claim(saved, newDir, lockMade)
	if err != nil {
		return err
	}
	if err := c.ensureTLS(); err != nil {
		return err
	}
	if scaling {
		return c.scale(ctx, saved, state, begin)
	}
	prov, err := c.provider(ctx)
	if err != nil {
		return err
	}
	defer prov.Close()

	noop, err := c.bringUp(ctx, prov, o, begin)
	if err != nil || (noop && state.Formed) {
		return err
	}
	if err := c.saveFormed(state); err != nil {
		return err
	}
	c.record(events.Event{Kind: events.KindUp, Message: fmt.Sprintf("up: %d nodes healthy", len(s.Addrs()))})
	return nil
}

// bringUp is the heart of up on any runtime, once the state dir is dealt
// with: nothing to do when the cluster already runs healthy; else inspect,
// preflight, membership, prepare, start what is missing (masters first),
// then form or wait. begin reports (and names, for an interruption) each
// step.
//
// noop is true when the cluster already was healthy.
func (c *Cluster) bringUp(ctx context.Context, prov provider.Provider, o UpOptions, begin func(string)) (noop bool, err error) {
	st, s := c.status(), c.Spec
	addrs := s.Addrs()
	if c.healthy(ctx, prov, addrs) {
		st.Infof("Cluster %q is already up and healthy (%d nodes); nothing to do.", s.Name, len(addrs))
		return true, nil
	}
	states, err := prov.Inspect(ctx)
	if err != nil {
		return false, err
	}
	var missing []spec.Node
	var frozen []string
	for i, ns := range states {
		switch {
		case !ns.Running:
			missing = append(missing, ns.Node)
		case ns.Paused:
			// Paused on purpose (rcluster node pause, kill -STOP): up
			// brings the cluster back to the spec's shape.
			begin(fmt.Sprintf("Resuming paused node %s", ns.Node.Addr()))
			rerr := prov.Resume(ctx, ns.Node)
			st.End(rerr == nil)
			if rerr != nil {
				return false, rerr
			}
			states[i].Paused, states[i].Responding = false, true
		case ns.Partitioned:
			begin(fmt.Sprintf("Reconnecting partitioned node %s", ns.Node.Addr()))
			herr := prov.Heal(ctx, ns.Node)
			st.End(herr == nil)
			if herr != nil {
				return false, herr
			}
			states[i].Partitioned, states[i].Responding = false, true
		case !ns.Responding:
			frozen = append(frozen, fmt.Sprintf("%s (%s)", ns.Node.Addr(), frozenDetail(ns)))
		}
	}
	if len(frozen) > 0 {
		return false, fmt.Errorf("%s %s running but not answering (stopped with SIGSTOP, or overloaded?); nothing was started; resume %s or run `rcluster down`",
			strings.Join(frozen, ", "), isAre(len(frozen)), itThem(len(frozen)))
	}
	if len(missing) == 0 && !c.hasOpenSlots(ctx) {
		// Everything runs: a healthy cluster is a no-op. (WaitReady returns
		// on its first good round; the bound only matters when it is not.)
		qctx, qcancel := context.WithTimeout(ctx, 3*time.Second)
		werr := slots.WaitReady(qctx, addrs, len(addrs), c.Conn)
		qcancel()
		if werr == nil {
			st.Infof("Cluster %q is already up and healthy (%d nodes); nothing to do.", s.Name, len(addrs))
			return true, nil
		}
	}

	if len(missing) > 0 {
		begin("Preflight checks")
		version, perr := prov.Preflight(ctx, missing)
		st.End(perr == nil)
		if perr != nil {
			return false, perr
		}
		if version != "" {
			fmt.Fprintf(c.log(), "using %s\n", version)
		}
	}
	responding := make([]bool, len(states))
	for i, ns := range states {
		responding[i] = ns.Responding
	}
	views, err := c.membership(ctx, prov, responding)
	if err != nil {
		return false, err
	}
	// This run forms a new cluster when no node has cluster state yet
	// (then even the nodes.conf a started node wrote of itself is this
	// run's alone).
	forming := len(views) > 0
	for _, v := range views {
		if v.formed() {
			forming = false
		}
	}
	var started []spec.Node
	defer func() {
		if err == nil || len(started) == 0 {
			return
		}
		if o.Retain {
			st.Infof("Leaving %d node(s) started by this run running (--retain).", len(started))
			return
		}
		// ctx may be cancelled (timeout, SIGINT): clean up on a fresh deadline.
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer ccancel()
		st.Start(prov.UndoStep(len(started)))
		uerr := prov.Undo(cctx, started)
		st.End(uerr == nil)
		if uerr != nil {
			err = errors.Join(err, fmt.Errorf("stopping nodes started by this run: %w", uerr))
			return
		}
		if forming {
			// A half-formed cluster must not look like a saved one to the
			// next up: these nodes were empty and fresh, their nodes.conf
			// holds nothing but what this run did.
			for _, n := range started {
				path := prov.NodesFile(n)
				if path == "" {
					continue
				}
				if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
					err = errors.Join(err, fmt.Errorf("node %s: reset cluster state: %w", n.Addr(), rerr))
				}
			}
		}
	}()

	if len(missing) > 0 {
		begin(fmt.Sprintf("Writing configs for %d nodes", len(addrs)))
		perr := prov.Prepare(ctx)
		st.End(perr == nil)
		if perr != nil {
			return false, perr
		}
		if err := c.refreshConn(); err != nil {
			return false, err
		}
		begin(prov.StartStep(len(missing)))
		serr := startWaves(mastersFirst(s, missing), &started, func(wave []spec.Node) error { return prov.Start(ctx, wave) })
		st.End(serr == nil)
		if serr != nil {
			return false, serr
		}
	}

	waitWhat := "Waiting for the cluster to re-form from nodes.conf"
	if len(missing) == 0 {
		waitWhat = "Waiting for the cluster to become healthy"
	} else if len(missing) < len(addrs) {
		waitWhat = fmt.Sprintf("Waiting for %d restarted node(s) to rejoin", len(missing))
	}
	if err := c.formOrWait(ctx, addrs, begin, waitWhat, func() { forming = true }); err != nil {
		return false, err
	}
	st.Infof("Cluster %q is up: %d nodes %s", s.Name, len(addrs), prov.Describe())
	return false, nil
}

// frozenDetail says which unit runs but does not answer.
func frozenDetail(ns provider.NodeState) string {
	if ns.Pid > 0 {
		return fmt.Sprintf("pid %d", ns.Pid)
	}
	return ns.Detail
}

// healthy reports whether the cluster already runs as specified and is
// usable, in one round trip per node: the readiness checks plus INFO
// server, whose answer the provider must recognise as its own node (for
// processes, the pid in the node's pidfile on its port). Measured at 100
// nodes: ~60ms, against ~140ms for Inspect and then WaitReady.
func (c *Cluster) healthy(ctx context.Context, prov provider.Provider, addrs []string) bool {
	// A healthy cluster answers in milliseconds; a paused node would hold
	// this round for a whole call timeout before Inspect can say why.
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	h := slots.Check(ctx, addrs, len(addrs), c.Conn)
	return len(h.NotReady) == 0 && prov.Serving(ctx, h.Servers)
}

// checkRuntimeSwitch refuses a spec whose runtime differs from the saved
// cluster's while nodes of the saved runtime still run, naming them: two
// runtimes must never run one cluster's nodes at once.
func (c *Cluster) checkRuntimeSwitch(ctx context.Context, saved *statedir.State) error {
	want := c.Spec.RuntimeName()
	if saved.Runtime == want {
		return nil
	}
	old := *c.Spec
	old.Runtime = saved.Runtime
	prov, err := provider.For(ctx, &old, provider.Options{Conn: c.Conn, Log: c.log()})
	if err != nil {
		return fmt.Errorf("runtime was %s, now %s, and the %s runtime cannot be checked for running nodes: %w", saved.Runtime, want, saved.Runtime, err)
	}
	defer prov.Close()
	states, err := prov.Inspect(ctx)
	if err != nil {
		return fmt.Errorf("runtime was %s, now %s: checking for running nodes: %w", saved.Runtime, want, err)
	}
	var live []string
	for _, ns := range states {
		if ns.Running {
			live = append(live, fmt.Sprintf("%s (%s)", ns.Node.Addr(), frozenDetail(ns)))
		}
	}
	if len(live) == 0 {
		return nil
	}
	return &RuntimeSwitchError{Dir: c.Spec.Dir, From: saved.Runtime, To: want, Running: live}
}

// RuntimeSwitchError refuses a runtime switch while nodes of the old
// runtime still run; nothing was started or changed.
type RuntimeSwitchError struct {
	Dir, From, To string
	Running       []string
}

func (e *RuntimeSwitchError) Error() string {
	return fmt.Sprintf("the cluster in %s runs on runtime %s, the spec now says %s, and %s of runtime %s still %s: %s; nothing was started or changed; "+
		"stop %s first (`rcluster down` with the spec's old runtime), then `rcluster up`",
		e.Dir, e.From, e.To, plural(len(e.Running), "a node", "nodes"), e.From, plural(len(e.Running), "runs", "run"),
		strings.Join(e.Running, ", "), itThem(len(e.Running)))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// startWaves starts each wave in turn and appends it to *started once it
// runs; it stops at the first wave that fails (start stops what it started
// of that wave itself).
func startWaves[N any](waves [][]N, started *[]N, start func([]N) error) error {
	for _, wave := range waves {
		if err := start(wave); err != nil {
			return err
		}
		*started = append(*started, wave...)
	}
	return nil
}

// mastersFirst splits nodes (a subset of the spec's, in any order) into the
// spec's masters and the rest, dropping an empty wave. The roles are the
// spec's: after a failover a "master" may be a replica, which only changes
// the order.
func mastersFirst[N interface{ Addr() string }](s *spec.Spec, nodes []N) [][]N {
	isMaster := map[string]bool{}
	for i, n := range s.Nodes() {
		isMaster[n.Addr()] = i < s.Masters()
	}
	var masters, rest []N
	for _, n := range nodes {
		if isMaster[n.Addr()] {
			masters = append(masters, n)
		} else {
			rest = append(rest, n)
		}
	}
	var waves [][]N
	for _, w := range [][]N{masters, rest} {
		if len(w) > 0 {
			waves = append(waves, w)
		}
	}
	return waves
}

// formOrWait is the step every runtime shares once its nodes run: read each
// node's cluster state, then form a cluster of fresh nodes or wait for a
// formed one to become healthy; refuse to mix them, or to touch non-empty
// nodes that belong to no cluster. onForm, when set, is called just before
// forming starts.
func (c *Cluster) formOrWait(ctx context.Context, addrs []string, begin func(string), waitWhat string, onForm func()) error {
	st, s := c.status(), c.Spec
	begin("Reading cluster state")
	fresh, formed, loners, rerr := c.classify(ctx, addrs)
	st.End(rerr == nil && len(loners) == 0)
	if rerr != nil {
		return rerr
	}
	if len(loners) > 0 {
		return fmt.Errorf("%s %s not empty but belong%s to no cluster (nodes.conf missing or new); refusing to form or re-form a cluster with %s; "+
			"their data is untouched: restore their nodes.conf, or if the data is disposable, `rcluster down --purge` starts over",
			strings.Join(loners, ", "), isAre(len(loners)), sIf(len(loners) == 1), itThem(len(loners)))
	}
	switch {
	case len(formed) == 0:
		plan, perr := slots.NewPlan(s.Nodes(), s.Replicas)
		if perr != nil {
			return perr
		}
		if onForm != nil {
			onForm()
		}
		writePlan(c.log(), plan)
		begin(fmt.Sprintf("Forming the cluster (%d masters, %d replicas each)", len(plan.Shards), s.Replicas))
		ferr := slots.Form(ctx, plan, slots.FormOptions{Conn: formConn(c.Conn, len(addrs)), Log: c.log()})
		st.End(ferr == nil)
		if ferr != nil {
			return ferr // slots.Form's errors already start with "form: "
		}
	case len(fresh) > 0:
		return fmt.Errorf("nodes %s have no cluster state while %s do (lost nodes.conf?); refusing to mix them; run `rcluster down --purge` to start over",
			strings.Join(fresh, ", "), strings.Join(formed, ", "))
	default:
		if err := c.finishOpen(ctx, begin); err != nil {
			return err
		}
		begin(waitWhat)
		werr := slots.WaitReady(ctx, addrs, len(addrs), c.Conn)
		st.End(werr == nil)
		if werr != nil {
			return fmt.Errorf("cluster did not become healthy: %w", werr)
		}
	}
	return nil
}

// formConn gives each call while forming more time on large clusters: with
// hundreds of nodes handshaking and replicas syncing on a small machine, one
// node can take seconds to answer. 2s up to ~130 nodes, then 15ms per node.
func formConn(o redisconn.Options, nodes int) redisconn.Options {
	if o.Timeout == 0 {
		o.Timeout = max(2*time.Second, time.Duration(nodes)*15*time.Millisecond)
	}
	return o
}

// classify asks every node whether it already belongs to a cluster
// (knows other nodes or owns slots) or is fresh. Loners are nodes that know
// no other node but hold keys: a node whose nodes.conf was lost restarts
// like that (and claims the slots of its keys), and must not be formed
// into a new cluster nor waited for.
func (c *Cluster) classify(ctx context.Context, addrs []string) (fresh, formed, loners []string, err error) {
	type res struct {
		formed bool
		keys   int64
		known  string
		err    error
	}
	out := make([]res, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() {
			cl := c.Conn.Node(a)
			defer cl.Close()
			pipe := cl.Pipeline()
			infoCmd := pipe.ClusterInfo(ctx)
			sizeCmd := pipe.DBSize(ctx)
			_, _ = pipe.Exec(ctx)
			if err := infoCmd.Err(); err != nil {
				out[i].err = fmt.Errorf("node %s: cluster info: %w", a, err)
				return
			}
			if err := sizeCmd.Err(); err != nil {
				out[i].err = fmt.Errorf("node %s: dbsize: %w", a, err)
				return
			}
			info := topology.ParseInfo(infoCmd.Val())
			out[i].known = info["cluster_known_nodes"]
			out[i].keys = sizeCmd.Val()
			out[i].formed = out[i].known != "1" || info["cluster_slots_assigned"] != "0"
		})
	}
	wg.Wait()
	var errs []error
	for i, r := range out {
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case r.known == "1" && r.keys > 0:
			loners = append(loners, fmt.Sprintf("%s (%d keys)", addrs[i], r.keys))
		case r.formed:
			formed = append(formed, addrs[i])
		default:
			fresh = append(fresh, addrs[i])
		}
	}
	return fresh, formed, loners, errors.Join(errs...)
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
