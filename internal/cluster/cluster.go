// Package cluster runs rcluster's lifecycle: up (preflight, render, start,
// form, wait), down and status, as ordered steps sharing one context, with
// tear-down of what a failed run started.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rcluster/rcluster/internal/confgen"
	"github.com/rcluster/rcluster/internal/procmgr"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/slots"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/statedir"
	"github.com/rcluster/rcluster/internal/topology"
	"github.com/rcluster/rcluster/internal/ui"
)

// Cluster is one spec plus how to talk to its nodes and where to report.
type Cluster struct {
	Spec   *spec.Spec
	Conn   redisconn.Options
	Status *ui.Status
	// Log receives detail lines (may be io.Discard).
	Log io.Writer
	// LockWait bounds how long to wait for another up/down on the same spec.
	LockWait time.Duration
}

func (c *Cluster) status() *ui.Status {
	if c.Status == nil {
		return ui.Quiet()
	}
	return c.Status
}

func (c *Cluster) log() io.Writer {
	if c.Log == nil {
		return io.Discard
	}
	return c.Log
}

func (c *Cluster) lockWait() time.Duration {
	if c.LockWait <= 0 {
		return 30 * time.Second
	}
	return c.LockWait
}

// procNodes maps the spec's nodes onto process descriptions.
func (c *Cluster) procNodes() []procmgr.Node {
	s := c.Spec
	out := make([]procmgr.Node, 0, len(s.Ports))
	env := s.ChildEnv(os.Environ())
	for _, n := range s.Nodes() {
		out = append(out, procmgr.Node{
			Host: n.Host, Port: n.Port, Binary: s.RedisServer,
			ConfFile: s.ConfFile(n.Port), PidFile: s.PidFile(n.Port), LogFile: s.LogFile(n.Port),
			Env: env,
		})
	}
	return out
}

func (c *Cluster) procOpts() procmgr.Options { return procmgr.Options{Conn: c.Conn} }

// refreshConn re-reads the spec's client settings once configs (and any
// generated TLS certificates) exist, keeping the caller's timeouts.
func (c *Cluster) refreshConn() error {
	o, err := c.Spec.ConnOptions()
	if err != nil {
		return fmt.Errorf("client settings: %w", err)
	}
	o.Timeout, o.NoRetry = c.Conn.Timeout, c.Conn.NoRetry
	if c.Conn.Username != "" || c.Conn.Password != "" {
		o.Username, o.Password = c.Conn.Username, c.Conn.Password
	}
	c.Conn = o
	return nil
}

// UpOptions tune Up.
type UpOptions struct {
	// Timeout bounds the whole of up (default 60s).
	Timeout time.Duration
	// Retain keeps nodes started by a failed run (for debugging).
	Retain bool
}

// Up brings the cluster to healthy: nothing to do when it already is;
// otherwise preflight (binary, ports, state dir: every problem at once),
// check that the nodes' saved cluster state fits together, start the
// missing nodes and form the cluster (fresh nodes) or wait for it to
// re-form from nodes.conf (restarted nodes). On failure or cancellation it
// stops the nodes this run started (unless o.Retain).
func (c *Cluster) Up(ctx context.Context, o UpOptions) (err error) {
	if c.foreign() {
		return c.upForeign(ctx, o) // docker and external: foreign.go
	}
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

	newDir := !statedir.Exists(s.Dir)
	lockMade := !statedir.Exists(filepath.Join(s.Dir, statedir.LockFile))
	unlock, err := lock(ctx, s.Dir, c.lockWait())
	if err != nil {
		if errors.Is(err, ErrLocked) || ctx.Err() != nil {
			return err
		}
		// The state dir itself is the problem: report the binary too.
		problems := []error{err}
		if _, berr := CheckBinary(ctx, s.RedisServer); berr != nil {
			problems = append(problems, berr)
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
	if saved != nil {
		if d := diffState(*saved, c.wantState()); len(d) > 0 {
			return &ConflictError{Dir: s.Dir, Diffs: d}
		}
	}
	state, err := c.claim(saved, newDir, lockMade)
	if err != nil {
		return err
	}

	nodes := c.procNodes()
	addrs := s.Addrs()
	if c.healthy(ctx, nodes, addrs) {
		st.Infof("Cluster %q is already up and healthy (%d nodes); nothing to do.", s.Name, len(addrs))
		return nil
	}
	states := procmgr.Inspect(ctx, nodes, c.procOpts())
	var missing []procmgr.Node
	var frozen []string
	for i, ps := range states {
		switch {
		case !ps.Running:
			missing = append(missing, nodes[i])
		case !ps.Responding:
			frozen = append(frozen, fmt.Sprintf("%s (pid %d)", nodes[i].Addr(), ps.Pid))
		}
	}
	if len(frozen) > 0 {
		return fmt.Errorf("%s %s running but not answering (stopped with SIGSTOP, or overloaded?); nothing was started; resume it (kill -CONT) or run `rcluster down`",
			strings.Join(frozen, ", "), isAre(len(frozen)))
	}
	if len(missing) == 0 {
		// Everything runs: a healthy cluster is a no-op. (WaitReady returns
		// on its first good round; the bound only matters when it is not.)
		qctx, qcancel := context.WithTimeout(ctx, 3*time.Second)
		werr := slots.WaitReady(qctx, addrs, len(addrs), c.Conn)
		qcancel()
		if werr == nil {
			st.Infof("Cluster %q is already up and healthy (%d nodes); nothing to do.", s.Name, len(addrs))
			return nil
		}
	}

	version := ""
	if len(missing) > 0 {
		begin("Preflight checks")
		var perr error
		version, perr = c.preflight(ctx, missing)
		st.End(perr == nil)
		if perr != nil {
			return perr
		}
		fmt.Fprintf(c.log(), "using %s\n", version)
	}

	responding := make([]bool, len(states))
	for i, ps := range states {
		responding[i] = ps.Responding
	}
	views, merr := c.membership(ctx, responding)
	if merr != nil {
		return merr
	}

	// This run forms a new cluster when no node has cluster state yet.
	forming := true
	for _, v := range views {
		if v.formed() {
			forming = false
		}
	}
	var started []procmgr.Node
	defer func() {
		switch cerr := ctx.Err(); {
		case err == nil || cerr == nil:
		case errors.Is(cerr, context.Canceled):
			// SIGINT/SIGTERM: what each step made of it is noise.
			err = fmt.Errorf("interrupted during %q: %w", step, cerr)
		case !errors.Is(err, cerr):
			err = fmt.Errorf("%w (gave up after %s: %w)", err, o.Timeout, cerr)
		}
		if err == nil || len(started) == 0 {
			return
		}
		if o.Retain {
			st.Infof("Leaving %d node(s) started by this run running (--retain).", len(started))
			return
		}
		// ctx may be cancelled (timeout, SIGINT): clean up on a fresh deadline.
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
		defer ccancel()
		st.Start(fmt.Sprintf("Stopping the %d node(s) this run started", len(started)))
		_, serr := procmgr.Stop(cctx, started, c.procOpts())
		st.End(serr == nil)
		if serr != nil {
			err = errors.Join(err, fmt.Errorf("stopping nodes started by this run: %w", serr))
			return
		}
		if forming {
			// A half-formed cluster must not look like a saved one to the
			// next up: these nodes were empty and fresh, their nodes.conf
			// holds nothing but what this run did.
			for _, n := range started {
				if rerr := os.Remove(s.NodesFile(n.Port)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
					err = errors.Join(err, fmt.Errorf("node %d: reset cluster state: %w", n.Port, rerr))
				}
			}
		}
	}()

	if len(missing) > 0 {
		begin(fmt.Sprintf("Writing configs for %d nodes", len(nodes)))
		_, werr := confgen.Write(s)
		st.End(werr == nil)
		if werr != nil {
			return fmt.Errorf("write configs: %w", werr)
		}
		if err := c.refreshConn(); err != nil {
			return err
		}
		begin(fmt.Sprintf("Starting %d redis-server nodes", len(missing)))
		serr := c.start(ctx, missing, &started)
		st.End(serr == nil)
		if serr != nil {
			return serr
		}
	}

	waitWhat := "Waiting for the cluster to re-form from nodes.conf"
	if len(missing) == 0 {
		waitWhat = "Waiting for the cluster to become healthy"
	} else if len(missing) < len(nodes) {
		waitWhat = fmt.Sprintf("Waiting for %d restarted node(s) to rejoin", len(missing))
	}
	if err := c.formOrWait(ctx, addrs, begin, waitWhat, nil); err != nil {
		return err
	}
	if err := c.saveFormed(state); err != nil {
		return err
	}
	st.Infof("Cluster %q is up: %d nodes on %s:%d-%d. Stop it with `rcluster down`.",
		s.Name, len(addrs), s.Host, slices.Min(s.Ports), slices.Max(s.Ports))
	return nil
}

// start starts nodes with procmgr.Start in two waves, the spec's masters
// and then the other nodes, and appends each started wave to *started (what
// a failed up stops). A master cannot report cluster_state:ok until 2s after
// it started (CLUSTER_WRITABLE_DELAY), replicas have no such delay, and
// starting daemons is CPU-bound (~15ms of CPU each): started all at once, the
// last master started with the last node, and the cluster was ready 2s after
// that. Measured at 100 nodes (50+50) on 2 cores, alternating runs: starting
// 100 at once finished at ~0.6s, the 50 masters alone at ~0.3s; up took
// 2.61-4.09s (median ~3.2s) at once and 2.45-2.90s (median 2.52s) masters
// first. When Start fails, the wave that failed was already stopped by it.
func (c *Cluster) start(ctx context.Context, nodes []procmgr.Node, started *[]procmgr.Node) error {
	return startWaves(mastersFirst(c.Spec, nodes), started, func(wave []procmgr.Node) error {
		return procmgr.Start(ctx, wave, c.procOpts())
	})
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

// healthy reports whether the cluster already runs as specified and is
// usable, in one round trip per node: the readiness checks plus INFO
// server, whose process_id must be the pid in the node's pidfile (the proof
// procmgr.Inspect makes on a connection of its own). Measured at 100 nodes:
// ~60ms, against ~140ms for Inspect and then WaitReady. Nodes without a
// pidfile skip the probe: they are not running.
func (c *Cluster) healthy(ctx context.Context, nodes []procmgr.Node, addrs []string) bool {
	for _, n := range nodes {
		if _, err := os.Stat(n.PidFile); err != nil {
			return false
		}
	}
	h := slots.Check(ctx, addrs, len(addrs), c.Conn)
	if len(h.NotReady) > 0 {
		return false
	}
	for i, n := range nodes {
		if !procmgr.Serves(n, h.Servers[i].PID, h.Servers[i].Port) {
			return false
		}
	}
	return true
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

// preflight checks, before anything is started, everything that would make
// starting the given nodes fail: the redis-server binary and its version,
// that the state dir is writable, and that every node's port and bus port
// is free. It reports every problem at once and returns the binary's
// description ("/usr/bin/redis-server (Redis 7.0.15)").
func (c *Cluster) preflight(ctx context.Context, toStart []procmgr.Node) (string, error) {
	var errs []error
	version, err := CheckBinary(ctx, c.Spec.RedisServer)
	if err != nil {
		errs = append(errs, err)
	}
	if err := checkWritable(c.Spec.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := procmgr.CheckPorts(toStart); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return "", &PreflightError{Problems: errs}
	}
	return version, nil
}

// PreflightError lists every reason up could not start nodes; nothing was
// started.
type PreflightError struct {
	Problems []error
}

func (e *PreflightError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = "  " + strings.ReplaceAll(p.Error(), "\n", "\n  ")
	}
	return "preflight failed, nothing was started:\n" + strings.Join(lines, "\n")
}

func (e *PreflightError) Unwrap() []error { return e.Problems }

// checkWritable creates and removes a file in dir.
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".rcluster-write-test-*")
	if err != nil {
		return fmt.Errorf("state dir %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("state dir %s: %w", dir, err)
	}
	return nil
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

var versionRE = regexp.MustCompile(`v=(\d+)\.(\d+)\.(\d+)`)

// CheckBinary finds the redis-server binary and checks it is >= 7.0.
func CheckBinary(ctx context.Context, bin string) (string, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("redis-server binary %q not found: %w (install it with `make deps` or set redis_server in the spec)", bin, err)
	}
	cmd := exec.CommandContext(ctx, path, "--version")
	cmd.Env = []string{} // it needs none, and must not inherit the spec's password variables
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", path, err)
	}
	m := versionRE.FindStringSubmatch(string(out))
	if m == nil {
		return "", fmt.Errorf("%s: cannot read a version from %q", path, strings.TrimSpace(string(out)))
	}
	major, _ := strconv.Atoi(m[1])
	if major < 7 {
		return "", fmt.Errorf("%s is Redis %s.%s.%s; rcluster needs Redis >= 7.0", path, m[1], m[2], m[3])
	}
	return fmt.Sprintf("%s (Redis %s.%s.%s)", path, m[1], m[2], m[3]), nil
}

// Down stops every node gracefully (SHUTDOWN, so the AOF is flushed),
// signalling only processes proven to be that node. Nodes already dead are
// reported, not errors. It also stops nodes on ports the saved state lists
// but the spec no longer does. With purge it then deletes what rcluster
// created in the state dir, and nothing else (see purge).
func (c *Cluster) Down(ctx context.Context, purge bool) error {
	if purge {
		if err := c.checkPurge(); err != nil {
			return err
		}
	}
	if c.foreign() {
		return c.downForeign(ctx, purge) // docker and external: foreign.go
	}
	st := c.status()
	s := c.Spec
	if !c.hasState() {
		st.Infof("Cluster %q has no state in %s; nothing to stop.", s.Name, s.Dir)
		return nil
	}
	unlock, err := lock(ctx, s.Dir, c.lockWait())
	if err != nil {
		return err
	}
	defer unlock()

	nodes := c.procNodes()
	saved, serr := c.readState()
	if serr == nil && saved != nil {
		for _, p := range saved.Ports {
			if !slices.Contains(s.Ports, p) {
				nodes = append(nodes, procmgr.Node{Host: saved.Host, Port: p, Binary: s.RedisServer,
					ConfFile: s.ConfFile(p), PidFile: s.PidFile(p), LogFile: s.LogFile(p)})
			}
		}
	}

	st.Start(fmt.Sprintf("Stopping %d nodes", len(nodes)))
	results, err := procmgr.Stop(ctx, nodes, c.procOpts())
	st.End(err == nil)
	stopped, dead := 0, 0
	for _, r := range results {
		line := fmt.Sprintf("  %s: %s", r.Node.Addr(), r.Action)
		if r.Action == "not running" {
			dead++
		} else if r.Err == nil {
			stopped++
		}
		if r.Pid > 0 {
			line += fmt.Sprintf(" (pid %d)", r.Pid)
		}
		if r.Detail != "" {
			line += ": " + r.Detail
		}
		if r.Err != nil {
			line += ": " + r.Err.Error()
		}
		fmt.Fprintln(c.log(), line)
	}
	if err != nil {
		return err
	}
	summary := fmt.Sprintf("%d stopped", stopped)
	if dead > 0 {
		summary += fmt.Sprintf(", %d %s not running", dead, wasWere(dead))
	}
	if !purge {
		st.Infof("Cluster %q stopped (%s); data kept in %s (`rcluster up` brings it back, `down --purge` deletes it).", s.Name, summary, s.Dir)
		return nil
	}
	return c.purge(saved, summary)
}

// hasState reports whether the state dir holds an rcluster cluster: a
// state file, or (an up of an older rcluster that never completed) configs.
func (c *Cluster) hasState() bool {
	return statedir.Exists(statedir.Path(c.Spec.Dir)) || statedir.Exists(c.Spec.ConfDir())
}

// checkPurge refuses, before anything is stopped, a state dir that cannot
// be purged: the filesystem root, the home directory, the spec file's own
// directory.
func (c *Cluster) checkPurge() error {
	specDir := ""
	if c.Spec.Path != "" {
		specDir = filepath.Dir(c.Spec.Path)
	}
	return statedir.CheckPurgeTarget(c.Spec.Dir, specDir)
}

// purge removes what rcluster created in the state dir (statedir.Purge)
// and says what it kept.
func (c *Cluster) purge(saved *statedir.State, summary string) error {
	st, s := c.status(), c.Spec
	st.Start("Removing what rcluster created in " + s.Dir)
	res, err := statedir.Purge(s.Dir, saved, statedir.LayoutOf(s))
	st.End(err == nil)
	if err != nil {
		return err
	}
	if len(res.Kept) > 0 {
		st.Infof("Cluster %q stopped (%s) and its state deleted; kept %s, which rcluster did not create: %s.",
			s.Name, summary, s.Dir, strings.Join(res.Kept, ", "))
		return nil
	}
	st.Infof("Cluster %q stopped (%s) and its state deleted.", s.Name, summary)
	return nil
}

func itThem(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}

func wasWere(n int) string {
	if n == 1 {
		return "was"
	}
	return "were"
}
