// Package cluster runs rcluster's lifecycle: up (preflight, render, start,
// form, wait), down and status, as ordered steps sharing one context, with
// tear-down of what a failed run started.
package cluster

import (
	"context"
	"encoding/json"
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
	for _, n := range s.Nodes() {
		out = append(out, procmgr.Node{
			Host: n.Host, Port: n.Port, Binary: s.RedisServer,
			ConfFile: s.ConfFile(n.Port), PidFile: s.PidFile(n.Port), LogFile: s.LogFile(n.Port),
		})
	}
	return out
}

func (c *Cluster) procOpts() procmgr.Options { return procmgr.Options{Conn: c.Conn} }

// savedState is what up records after forming, to detect specs that no
// longer match the cluster on disk.
type savedState struct {
	Name     string `json:"name"`
	Host     string `json:"host"`
	Ports    []int  `json:"ports"`
	Replicas int    `json:"replicas"`
}

func (c *Cluster) statePath() string { return filepath.Join(c.Spec.Dir, "rcluster-state.json") }

func (c *Cluster) wantState() savedState {
	return savedState{Name: c.Spec.Name, Host: c.Spec.Host, Ports: slices.Clone(c.Spec.Ports), Replicas: c.Spec.Replicas}
}

func (c *Cluster) readState() (*savedState, error) {
	b, err := os.ReadFile(c.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", c.statePath(), err)
	}
	return &st, nil
}

func (c *Cluster) writeState() error {
	b, _ := json.MarshalIndent(c.wantState(), "", "  ")
	return os.WriteFile(c.statePath(), append(b, '\n'), 0o600)
}

// ConflictError says the spec no longer matches the cluster on disk.
type ConflictError struct {
	Dir   string
	Diffs []string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("the spec does not match the cluster saved in %s: %s; run `rcluster down --purge` to start over (this deletes its data)",
		e.Dir, strings.Join(e.Diffs, "; "))
}

func diffState(saved, want savedState) []string {
	var d []string
	if saved.Host != want.Host {
		d = append(d, fmt.Sprintf("host was %s, now %s", saved.Host, want.Host))
	}
	if !slices.Equal(saved.Ports, want.Ports) {
		d = append(d, fmt.Sprintf("ports were %v, now %v", saved.Ports, want.Ports))
	}
	if saved.Replicas != want.Replicas {
		d = append(d, fmt.Sprintf("replicas was %d, now %d", saved.Replicas, want.Replicas))
	}
	return d
}

// UpOptions tune Up.
type UpOptions struct {
	// Timeout bounds the whole of up (default 60s).
	Timeout time.Duration
	// Retain keeps nodes started by a failed run (for debugging).
	Retain bool
}

// Up brings the cluster to healthy: nothing to do when it already is;
// otherwise start the missing nodes and form the cluster (fresh nodes) or
// wait for it to re-form from nodes.conf (restarted nodes).
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

	nodes := c.procNodes()
	addrs := s.Addrs()
	states := procmgr.Inspect(ctx, nodes, c.procOpts())
	var missing []procmgr.Node
	for i, ps := range states {
		if !ps.Running {
			missing = append(missing, nodes[i])
		}
	}
	if len(missing) == 0 {
		// Everything runs: a healthy cluster is a no-op.
		qctx, qcancel := context.WithTimeout(ctx, time.Second)
		werr := slots.WaitReady(qctx, addrs, len(addrs), c.Conn)
		qcancel()
		if werr == nil {
			st.Infof("Cluster %q is already up and healthy (%d nodes); nothing to do.", s.Name, len(addrs))
			return nil
		}
	}

	var started []procmgr.Node
	defer func() {
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
		if _, serr := procmgr.Stop(cctx, started, c.procOpts()); serr != nil {
			err = errors.Join(err, fmt.Errorf("stopping nodes started by this run: %w", serr))
		}
	}()

	if len(missing) > 0 {
		st.Start("Checking redis-server")
		version, perr := CheckBinary(ctx, s.RedisServer)
		st.End(perr == nil)
		if perr != nil {
			return perr
		}
		fmt.Fprintf(c.log(), "using %s\n", version)

		st.Start(fmt.Sprintf("Writing configs for %d nodes", len(nodes)))
		_, werr := confgen.Write(s)
		st.End(werr == nil)
		if werr != nil {
			return fmt.Errorf("write configs: %w", werr)
		}

		st.Start(fmt.Sprintf("Starting %d redis-server nodes", len(missing)))
		serr := procmgr.Start(ctx, missing, c.procOpts())
		st.End(serr == nil)
		if serr != nil {
			return serr
		}
		started = missing
	}

	st.Start("Reading cluster state")
	fresh, formed, rerr := c.classify(ctx, addrs)
	st.End(rerr == nil)
	if rerr != nil {
		return rerr
	}
	switch {
	case len(formed) == 0:
		plan, perr := slots.NewPlan(s.Nodes(), s.Replicas)
		if perr != nil {
			return perr
		}
		st.Start(fmt.Sprintf("Forming the cluster (%d masters, %d replicas each)", len(plan.Shards), s.Replicas))
		ferr := slots.Form(ctx, plan, slots.FormOptions{Conn: c.Conn, Log: c.log()})
		st.End(ferr == nil)
		if ferr != nil {
			return fmt.Errorf("form cluster: %w", ferr)
		}
	case len(fresh) > 0:
		return fmt.Errorf("nodes %s have no cluster state while %s do (lost nodes.conf?); refusing to mix them; run `rcluster down --purge` to start over",
			strings.Join(fresh, ", "), strings.Join(formed, ", "))
	default:
		st.Start("Waiting for the cluster to re-form from nodes.conf")
		werr := slots.WaitReady(ctx, addrs, len(addrs), c.Conn)
		st.End(werr == nil)
		if werr != nil {
			return fmt.Errorf("cluster did not become healthy: %w", werr)
		}
	}
	if err := c.writeState(); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	st.Infof("Cluster %q is up: %d nodes on %s:%d-%d. Stop it with `rcluster down`.",
		s.Name, len(addrs), s.Host, slices.Min(s.Ports), slices.Max(s.Ports))
	return nil
}

// classify asks every node whether it already belongs to a cluster
// (knows other nodes or owns slots) or is fresh.
func (c *Cluster) classify(ctx context.Context, addrs []string) (fresh, formed []string, err error) {
	type res struct {
		formed bool
		err    error
	}
	out := make([]res, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := c.Conn.Node(a)
			defer cl.Close()
			txt, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				out[i].err = fmt.Errorf("node %s: cluster info: %w", a, err)
				return
			}
			info := topology.ParseInfo(txt)
			out[i].formed = info["cluster_known_nodes"] != "1" || info["cluster_slots_assigned"] != "0"
		}()
	}
	wg.Wait()
	var errs []error
	for i, r := range out {
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case r.formed:
			formed = append(formed, addrs[i])
		default:
			fresh = append(fresh, addrs[i])
		}
	}
	return fresh, formed, errors.Join(errs...)
}

var versionRE = regexp.MustCompile(`v=(\d+)\.(\d+)\.(\d+)`)

// CheckBinary finds the redis-server binary and checks it is >= 7.0.
func CheckBinary(ctx context.Context, bin string) (string, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("redis-server binary %q not found: %w (install it with `make deps` or set redis_server in the spec)", bin, err)
	}
	out, err := exec.CommandContext(ctx, path, "--version").Output()
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

// Down stops every node gracefully. With purge it also deletes the state dir.
func (c *Cluster) Down(ctx context.Context, purge bool) error {
	if c.foreign() {
		return c.downForeign(ctx, purge) // docker and external: foreign.go
	}
	st := c.status()
	s := c.Spec
	if _, err := os.Stat(s.Dir); errors.Is(err, os.ErrNotExist) {
		st.Infof("Cluster %q has no state in %s; nothing to stop.", s.Name, s.Dir)
		return nil
	}
	unlock, err := lock(ctx, s.Dir, c.lockWait())
	if err != nil {
		return err
	}
	defer unlock()

	st.Start(fmt.Sprintf("Stopping %d nodes", len(s.Ports)))
	results, err := procmgr.Stop(ctx, c.procNodes(), c.procOpts())
	st.End(err == nil)
	for _, r := range results {
		line := fmt.Sprintf("  %s: %s", r.Node.Addr(), r.Action)
		if r.Pid > 0 {
			line += fmt.Sprintf(" (pid %d)", r.Pid)
		}
		if r.Err != nil {
			line += ": " + r.Err.Error()
		}
		fmt.Fprintln(c.log(), line)
	}
	if err != nil {
		return err
	}
	if !purge {
		st.Infof("Cluster %q stopped; data kept in %s (`rcluster up` brings it back, `down --purge` deletes it).", s.Name, s.Dir)
		return nil
	}
	st.Start("Removing " + s.Dir)
	perr := purgeDir(s)
	st.End(perr == nil)
	return perr
}

// purgeDir removes the state dir, but only when it looks like one rcluster
// made: it must hold our lock file, state file or conf dir.
func purgeDir(s *spec.Spec) error {
	ours := false
	for _, p := range []string{"rcluster.lock", "rcluster-state.json", "conf"} {
		if _, err := os.Stat(filepath.Join(s.Dir, p)); err == nil {
			ours = true
		}
	}
	if !ours {
		return fmt.Errorf("refusing to delete %s: it does not look like an rcluster state dir", s.Dir)
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("purge %s: %w", s.Dir, err)
	}
	return nil
}
