package provider

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/rcluster/rcluster/internal/confgen"
	"github.com/rcluster/rcluster/internal/procmgr"
	"github.com/rcluster/rcluster/internal/slots"
	"github.com/rcluster/rcluster/internal/spec"
)

// Process runs each node as a local redis-server process (runtime:
// process), managed through its files in the state dir (procmgr).
type Process struct {
	spec *spec.Spec
	o    Options
}

// Name implements Provider.
func (p *Process) Name() string { return spec.RuntimeProcess }

// StartStep implements Provider.
func (p *Process) StartStep(n int) string { return fmt.Sprintf("Starting %d redis-server nodes", n) }

// UndoStep implements Provider.
func (p *Process) UndoStep(n int) string {
	return fmt.Sprintf("Stopping the %d node(s) this run started", n)
}

// Describe implements Provider.
func (p *Process) Describe() string {
	s := p.spec
	return fmt.Sprintf("on %s:%d-%d. Stop it with `rcluster down`.", s.Host, slices.Min(s.Ports), slices.Max(s.Ports))
}

// Close implements Provider.
func (p *Process) Close() error { return nil }

// ProcNode is the procmgr description of spec node n.
func ProcNode(s *spec.Spec, n spec.Node) procmgr.Node {
	return procmgr.Node{
		Host: n.Host, Port: n.Port, Binary: s.RedisServer,
		ConfFile: s.ConfFile(n.Port), PidFile: s.PidFile(n.Port), LogFile: s.LogFile(n.Port),
		Env: s.ChildEnv(os.Environ()),
	}
}

func (p *Process) procNodes(nodes []spec.Node) []procmgr.Node {
	out := make([]procmgr.Node, len(nodes))
	for i, n := range nodes {
		out[i] = ProcNode(p.spec, n)
	}
	return out
}

func (p *Process) procOpts() procmgr.Options { return procmgr.Options{Conn: p.o.Conn} }

// Preflight implements Provider: the redis-server binary and its version,
// that the state dir is writable, and that every node's client and bus
// port is free.
func (p *Process) Preflight(ctx context.Context, nodes []spec.Node) (string, error) {
	var errs []error
	version, err := CheckBinary(ctx, p.spec.RedisServer)
	if err != nil {
		errs = append(errs, err)
	}
	if len(nodes) > 0 {
		if err := CheckWritable(p.spec.Dir); err != nil {
			errs = append(errs, err)
		}
		if err := procmgr.CheckPorts(p.procNodes(nodes)); err != nil {
			errs = append(errs, err)
		}
	}
	return version, preflightErr(errs)
}

// Prepare implements Provider: every node's config (and TLS material).
func (p *Process) Prepare(context.Context) error {
	if _, err := confgen.Write(p.spec); err != nil {
		return fmt.Errorf("write configs: %w", err)
	}
	return nil
}

// Inspect implements Provider (procmgr.Inspect: identity proven by the
// pidfile and INFO server or the process's executable and command line).
func (p *Process) Inspect(ctx context.Context) ([]NodeState, error) {
	nodes := p.spec.Nodes()
	states := procmgr.Inspect(ctx, p.procNodes(nodes), p.procOpts())
	out := make([]NodeState, len(nodes))
	for i, st := range states {
		out[i] = NodeState{Node: nodes[i], Running: st.Running, Responding: st.Responding, Paused: st.Paused,
			Unproven: st.Unproven, Pid: st.Pid, Detail: st.Detail}
	}
	return out, nil
}

// Serving implements Provider: the process that answered at each address
// must be the one its pidfile names, on its port (procmgr.Serves). Nodes
// without a pidfile are not running: no need to look further.
func (p *Process) Serving(_ context.Context, answered []slots.Server) bool {
	nodes := p.procNodes(p.spec.Nodes())
	if len(answered) != len(nodes) {
		return false
	}
	for i, n := range nodes {
		if _, err := os.Stat(n.PidFile); err != nil {
			return false
		}
		if !procmgr.Serves(n, answered[i].PID, answered[i].Port) {
			return false
		}
	}
	return true
}

// Start implements Provider (procmgr.Start: spawned and answering PING;
// on failure it stops what it started).
func (p *Process) Start(ctx context.Context, nodes []spec.Node) error {
	return procmgr.Start(ctx, p.procNodes(nodes), p.procOpts())
}

// Undo implements Provider: a graceful stop of what Start started.
func (p *Process) Undo(ctx context.Context, nodes []spec.Node) error {
	_, err := procmgr.Stop(ctx, p.procNodes(nodes), p.procOpts())
	return err
}

// StopAll implements Provider: SHUTDOWN every node (the AOF is flushed),
// signals only for processes proven to be that node.
func (p *Process) StopAll(ctx context.Context, extra []spec.Node) ([]StopResult, error) {
	nodes := append(p.spec.Nodes(), extra...)
	res, err := procmgr.Stop(ctx, p.procNodes(nodes), p.procOpts())
	out := make([]StopResult, len(res))
	for i, r := range res {
		out[i] = StopResult{Addr: r.Node.Addr(), Action: r.Action, Pid: r.Pid, Detail: r.Detail, Err: r.Err}
	}
	return out, err
}

// Summary implements Provider: "3 stopped, 1 was not running".
func (p *Process) Summary(res []StopResult) string {
	stopped, dead := 0, 0
	for _, r := range res {
		switch {
		case r.Action == "not running":
			dead++
		case r.Err == nil:
			stopped++
		}
	}
	out := fmt.Sprintf("%d stopped", stopped)
	if dead > 0 {
		out += fmt.Sprintf(", %d %s not running", dead, plural(dead, "was", "were"))
	}
	return out
}

// NodesFile implements Provider.
func (p *Process) NodesFile(n spec.Node) string { return p.spec.NodesFile(n.Port) }

// Kill implements Provider (procmgr.Kill: SIGKILL of the proven process).
func (p *Process) Kill(ctx context.Context, n spec.Node) error {
	return procmgr.Kill(ctx, ProcNode(p.spec, n), p.procOpts())
}

// StopNode implements Provider: SHUTDOWN (the AOF is flushed), signals
// only for the proven process.
func (p *Process) StopNode(ctx context.Context, n spec.Node) error {
	_, err := procmgr.Stop(ctx, []procmgr.Node{ProcNode(p.spec, n)}, p.procOpts())
	if err != nil {
		return fmt.Errorf("node %s: stop: %w", n.Addr(), err)
	}
	return nil
}

// StartNode implements Provider: the node's config from the last up,
// its data dir as it was.
func (p *Process) StartNode(ctx context.Context, n spec.Node) error {
	if err := procmgr.Start(ctx, []procmgr.Node{ProcNode(p.spec, n)}, p.procOpts()); err != nil {
		return fmt.Errorf("node %s: start: %w", n.Addr(), err)
	}
	return nil
}

// Pause implements Provider (procmgr.Pause: SIGSTOP).
func (p *Process) Pause(ctx context.Context, n spec.Node) error {
	return procmgr.Pause(ctx, ProcNode(p.spec, n), p.procOpts())
}

// Resume implements Provider (procmgr.Resume: SIGCONT, then PING).
func (p *Process) Resume(ctx context.Context, n spec.Node) error {
	return procmgr.Resume(ctx, ProcNode(p.spec, n), p.procOpts())
}

// Partition implements Provider: local processes share the host's network,
// so none can be cut off without firewall rules, which rcluster never
// touches.
func (p *Process) Partition(_ context.Context, n spec.Node) error {
	return fmt.Errorf("node %s: partition: runtime process: %w: its nodes share the host's network; pause it to simulate a hung node", n.Addr(), ErrNoPartition)
}

// Heal implements Provider (see Partition).
func (p *Process) Heal(_ context.Context, n spec.Node) error {
	return fmt.Errorf("node %s: heal: runtime process: %w: nothing to heal", n.Addr(), ErrNoPartition)
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
	server := "Redis"
	if strings.HasPrefix(string(out), "Valkey") {
		server = "Valkey" // valkey-server: Valkey 7.2+ speaks Redis 7's cluster protocol
	}
	major, _ := strconv.Atoi(m[1])
	if major < 7 {
		return "", fmt.Errorf("%s is %s %s.%s.%s; rcluster needs Redis >= 7.0", path, server, m[1], m[2], m[3])
	}
	return fmt.Sprintf("%s (%s %s.%s.%s)", path, server, m[1], m[2], m[3]), nil
}

// CheckWritable creates and removes a file in dir.
func CheckWritable(dir string) error {
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
