// Package procmgr runs redis-server nodes as local processes: parallel start
// where Start means "spawned and answering PING", identity proof before any
// signal (the pid from the pidfile must be that redis-server on that port),
// and graceful stop (SHUTDOWN, so the AOF is flushed) that collects every error.
package procmgr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shirou/gopsutil/v4/process"

	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/redisconn"
)

// Node describes one redis-server process managed through its files.
type Node struct {
	Host     string
	Port     int
	Binary   string // redis-server path or name
	ConfFile string // rendered redis.conf (daemonize yes, pidfile set)
	PidFile  string
	LogFile  string
	// Env is the launcher's environment (nil: inherit ours). The spec
	// strips variables that held secrets, so no node can read them.
	Env []string
}

// Addr is host:port (host defaults to 127.0.0.1).
func (n Node) Addr() string { return net.JoinHostPort(n.host(), strconv.Itoa(n.Port)) }

func (n Node) host() string {
	if n.Host == "" {
		return "127.0.0.1"
	}
	return n.Host
}

func (n Node) binary() string {
	if n.Binary == "" {
		return "redis-server"
	}
	return n.Binary
}

// State of a node's process.
type State struct {
	Pid     int  // 0 when no pidfile / no live process
	Running bool // a live process proven to be this node
	// Unproven is true for a live pid that may be this node but whose
	// identity the OS will not show (another user's process on macOS):
	// Running is false, yet the node must not be reported as stopped.
	// Start and Stop refuse it, and nothing signals it.
	Unproven bool
	// Responding is true when the node answered PING.
	Responding bool
	// Paused is true for a running node whose process is stopped
	// (SIGSTOP, see Pause): it answers nothing until Resume.
	Paused bool
	// Detail explains a not-running state: "no pidfile", "stale pidfile: pid 123 is not redis-server on port 7001",
	// "cannot prove pid 123 is redis-server on port 7001: ...", ...
	Detail string
}

// Options for Start/Stop.
type Options struct {
	Conn redisconn.Options
	// Ready bounds how long one node may take to answer PING after spawn (default 10s).
	Ready time.Duration
	// Grace bounds how long Stop waits for a node to exit after SHUTDOWN
	// before it sends SIGTERM (default 5s). SIGKILL follows 3s after SIGTERM.
	Grace time.Duration
}

func (o Options) withDefaults() Options {
	if o.Ready <= 0 {
		o.Ready = 10 * time.Second
	}
	if o.Grace <= 0 {
		o.Grace = 5 * time.Second
	}
	return o
}

// Escalation waits (variables so tests can shorten them).
var (
	termWait = 3 * time.Second // SIGTERM -> SIGKILL
	killWait = 2 * time.Second // SIGKILL -> give up
	portWait = 2 * time.Second // process gone -> port refuses
)

const (
	logLines  = 12 // log tail quoted in errors
	rollbackT = 30 * time.Second
)

// Start launches every node in parallel and returns when all answer PING.
// On the first failure it stops the nodes this call started and returns an
// error naming the port and quoting the node's log tail / stderr.
//
// Each node is spawned as `Binary ConfFile` in a new session (so Ctrl-C of
// the caller's process group does not reach it; redis-server daemonizes
// itself) and is ready when it answers PING and its pidfile holds the
// process_id INFO reports. Nodes that Identify proves running are skipped
// and left alone (idempotency is the caller's business: Start never
// restarts or reconfigures a running node). A node whose pidfile names a
// live process of unproven identity (State.Unproven) is refused. Before
// anything is spawned, every node to start must have its port and bus port
// (port+10000) free; otherwise Start starts nothing and names the ports and
// their holders.
func Start(ctx context.Context, nodes []Node, o Options) error {
	o = o.withDefaults()
	seen := map[int]bool{}
	for _, n := range nodes {
		if seen[n.Port] {
			return fmt.Errorf("start: port %d listed twice", n.Port)
		}
		seen[n.Port] = true
		if n.ConfFile == "" {
			return fmt.Errorf("start node %d: no config file", n.Port)
		}
	}

	states := Inspect(ctx, nodes, o)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	var todo []int
	var errs []error
	var socks sockets
	for i, st := range states {
		if st.Running {
			continue
		}
		if st.Unproven {
			errs = append(errs, fmt.Errorf("start node %d: %s", nodes[i].Port, st.Detail))
			continue
		}
		if err := checkPorts(nodes[i], &socks); err != nil {
			errs = append(errs, fmt.Errorf("start node %d: %w", nodes[i].Port, err))
		}
		todo = append(todo, i)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	spawned := make([]*spawn, len(nodes))
	var wg sync.WaitGroup
	for _, i := range todo {
		s := &spawn{node: nodes[i]}
		spawned[i] = s
		wg.Go(func() {
			if s.run(sctx, o); s.err != nil {
				cancel()
			}
		})
	}
	wg.Wait()

	for _, s := range spawned {
		if s == nil || s.err == nil {
			continue
		}
		// Nodes interrupted because another failed (or because the caller
		// gave up) are not causes; the caller's reason is reported once.
		if errors.Is(s.err, context.Canceled) || (ctx.Err() != nil && errors.Is(s.err, ctx.Err())) {
			continue
		}
		errs = append(errs, s.err)
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, fmt.Errorf("start: %w", err))
	}
	if len(errs) == 0 {
		return nil
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackT)
	defer rcancel()
	var rwg sync.WaitGroup
	rerrs := make([]error, len(spawned))
	for i, s := range spawned {
		if s == nil || !s.launched {
			continue
		}
		rwg.Go(func() { rerrs[i] = s.rollback(rctx, o) })
	}
	rwg.Wait()
	for _, e := range rerrs {
		if e != nil {
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

// spawn is one node being started by Start.
type spawn struct {
	node      Node
	launched  bool // the launcher ran: a daemon may exist
	forked    bool // the launcher exited 0 or was killed: a daemon may exist
	launcher  int  // launcher pid (never the daemon)
	daemonPid int  // from the log lines the daemon wrote
	logOff    int64
	err       error
}

// inheritNothing runs closeInheritedOnExec once, before the first node
// starts.
var inheritNothing sync.Once

// closeInheritedOnExec marks every descriptor above stderr close-on-exec,
// so that a daemon started from here keeps none of what this process
// inherited: a CI runner's output pipe, a flock(1) lock, a test harness's
// socket. A redis-server holding one would keep that pipe open (the step
// that reads it never ends) or that lock taken for as long as the node
// runs. Go opens its own descriptors close-on-exec already; /dev/fd lists
// them on Linux and macOS alike.
func closeInheritedOnExec() {
	ents, err := os.ReadDir("/dev/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

func (s *spawn) run(ctx context.Context, o Options) {
	n := s.node
	if err := ctx.Err(); err != nil {
		s.err = fmt.Errorf("start node %d: %w", n.Port, err)
		return
	}
	if fi, err := os.Stat(n.LogFile); err == nil {
		s.logOff = fi.Size()
	}
	var out bytes.Buffer
	inheritNothing.Do(closeInheritedOnExec)
	// Not CommandContext: a launcher killed mid-fork would leave a daemon we
	// cannot account for. It exits within milliseconds; o.Ready bounds it.
	cmd := exec.Command(n.binary(), n.ConfFile)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = n.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		s.err = fmt.Errorf("start node %d: %w", n.Port, err)
		return
	}
	s.launched, s.launcher = true, cmd.Process.Pid
	watchdog := time.AfterFunc(o.Ready, func() { _ = cmd.Process.Kill() })
	err := cmd.Wait()
	watchdog.Stop()
	if errors.Is(err, exec.ErrWaitDelay) {
		// The launcher exited 0, but its output pipe stayed open for
		// WaitDelay: the daemon it forked had not yet run far enough to
		// point its stdio at /dev/null (seen with 100 nodes starting at
		// once on 2 cores). The output only serves error messages.
		err = nil
	}
	var ee *exec.ExitError
	s.forked = err == nil || (errors.As(err, &ee) && !ee.Exited())
	if err != nil {
		s.err = fmt.Errorf("start node %d: %s %s: %v%s%s", n.Port, n.binary(), n.ConfFile, err,
			indent(out.String()), logTail(n.LogFile))
		return
	}
	if err := s.waitReady(ctx, o); err != nil {
		s.err = fmt.Errorf("start node %d: %w%s", n.Port, err, logTail(n.LogFile))
	}
}

// waitReady polls until the node answers PING and its pidfile names the
// process INFO reports, failing early when the daemon dies. Each poll is one
// connection (INFO server, then PING), refused fast while nothing listens.
func (s *spawn) waitReady(parent context.Context, o Options) error {
	n := s.node
	ctx, cancel := context.WithTimeout(parent, o.Ready)
	defer cancel()
	var last error
	for b := newBackoff(); ; {
		s.learnDaemonPid()
		pinged := false
		m, err := infoServer(ctx, n, o, &pinged)
		switch {
		case err != nil:
			last = err
		case !pinged:
			last = errors.New("answers INFO server but not PING")
		default:
			pid, err := readPidfile(n.PidFile)
			switch {
			case err != nil:
				return fmt.Errorf("answers PING as pid %s but its pidfile is unusable: %w", m["process_id"], err)
			case m["tcp_port"] != strconv.Itoa(n.Port):
				return fmt.Errorf("%s is served by a redis-server on port %s", n.Addr(), m["tcp_port"])
			case m["process_id"] != strconv.Itoa(pid):
				return fmt.Errorf("answers PING as pid %s but pidfile %s says %d", m["process_id"], n.PidFile, pid)
			}
			return nil
		}
		if s.daemonPid != 0 && !pidAlive(ctx, s.daemonPid) {
			return fmt.Errorf("redis-server (pid %d) exited during startup", s.daemonPid)
		}
		if b.Wait(ctx) != nil {
			if err := parent.Err(); err != nil {
				return fmt.Errorf("waiting for PING: %w", err)
			}
			return fmt.Errorf("not ready after %s: %v", o.Ready, last)
		}
	}
}

var logPidRe = regexp.MustCompile(`(?m)^(\d+):[A-Z] `)

// learnDaemonPid reads the log lines written since the spawn: redis
// prefixes every line with its pid, and a daemonizing redis-server forks
// before it logs anything, so that is the daemon.
func (s *spawn) learnDaemonPid() {
	if s.daemonPid != 0 || s.node.LogFile == "" {
		return
	}
	s.daemonPid = daemonPidFromLog(s.node.LogFile, s.logOff, s.launcher)
}

func daemonPidFromLog(path string, off int64, launcher int) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(io.NewSectionReader(f, off, 1<<20), 64<<10))
	for _, m := range logPidRe.FindAllSubmatch(b, -1) {
		if pid, err := strconv.Atoi(string(m[1])); err == nil && pid != launcher {
			return pid
		}
	}
	return 0
}

// rollback stops a node this Start spawned: through its pidfile when it got
// that far, else through the daemon pid from its log, proven by the OS's
// process facts (procIsNode).
func (s *spawn) rollback(ctx context.Context, o Options) error {
	n := s.node
	if st, p := identify(ctx, n, o); st.Running {
		defer p.release()
		r := terminate(ctx, n, o, p, st.Responding)
		return r.Err
	}
	if !s.forked {
		return nil
	}
	// The daemon may not have logged yet: give it a moment.
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for b := newBackoff(); s.daemonPid == 0; {
		s.learnDaemonPid()
		if s.daemonPid != 0 || b.Wait(wctx) != nil {
			break
		}
	}
	if s.daemonPid == 0 {
		return nil
	}
	p, err := openProof(ctx, s.daemonPid)
	if errors.Is(err, errExited) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("start node %d: cannot clean up pid %d: %v", n.Port, s.daemonPid, err)
	}
	defer p.release()
	if v, why := procIsNode(ctx, p.pid, p.created, n); v != isNode {
		return fmt.Errorf("start node %d: cannot clean up pid %d: %s", n.Port, s.daemonPid, why)
	}
	return terminate(ctx, n, o, p, false).Err
}

// Inspect reports the state of each node (in order) without changing anything.
// Nodes are identified in parallel (see Identify); a node that accepts
// connections but never answers (SIGSTOPped) costs one o.Conn timeout.
func Inspect(ctx context.Context, nodes []Node, o Options) []State {
	out := make([]State, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { out[i] = Identify(ctx, n, o) })
	}
	wg.Wait()
	return out
}

// StopResult is what Stop did to one node.
type StopResult struct {
	Node   Node
	Pid    int
	Action string // "shutdown", "sigterm", "sigkill", "not running", "refused" (State.Unproven: Err says why)
	Err    error
	// Detail says why Stop escalated past SHUTDOWN, or why a node counts
	// as not running ("stale pidfile: ...").
	Detail string
}

// Stop stops every node in parallel: SHUTDOWN through the client port,
// then SIGTERM and SIGKILL only for a process proven to be that node, and
// waits until the process is gone and the port is free. Nodes already dead
// are reported with Action "not running" and no error. The returned error
// joins every failure.
//
// Stop keeps the data: SHUTDOWN makes redis fsync its AOF (and write its
// RDB when save points are configured) before it exits, so
// Stop(ctx, []Node{n}, o) is the graceful single-node stop and Start brings
// the node back with its data. Only when SHUTDOWN is refused or does not
// end the process within o.Grace do SIGTERM (also a clean exit) and then
// SIGKILL follow; StopResult.Action says which one did it.
//
// A stopped (SIGSTOP) node is sent SIGCONT first. A pidfile whose pid is
// dead is removed when it belongs to the current user; a pidfile naming a
// live process that is not the node is left alone and never signalled; a
// live process whose identity cannot be proven (State.Unproven) is left
// alone with Action "refused" and an error.
func Stop(ctx context.Context, nodes []Node, o Options) ([]StopResult, error) {
	o = o.withDefaults()
	res := make([]StopResult, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { res[i] = stopNode(ctx, n, o) })
	}
	wg.Wait()
	var errs []error
	for _, r := range res {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return res, errors.Join(errs...)
}

func stopNode(ctx context.Context, n Node, o Options) StopResult {
	st, p := identify(ctx, n, o)
	if st.Unproven {
		return StopResult{Node: n, Pid: st.Pid, Action: "refused",
			Err: fmt.Errorf("stop node %d (pid %d): %s", n.Port, st.Pid, st.Detail)}
	}
	if !st.Running {
		removeDeadPidfile(ctx, n.PidFile)
		return StopResult{Node: n, Action: "not running", Detail: st.Detail}
	}
	defer p.release()
	return terminate(ctx, n, o, p, true)
}

// removeDeadPidfile removes path when it is ours and names a dead pid
// (pidAlive: a pid the OS will not tell about counts as alive). The file is
// looked at again just before it goes, so a pidfile that a node starting
// meanwhile rewrote (redis truncates and rewrites it) is kept.
func removeDeadPidfile(ctx context.Context, path string) {
	before, err := os.Stat(path)
	if err != nil {
		return
	}
	pid, err := readPidfile(path)
	if err != nil || pidAlive(ctx, pid) {
		return
	}
	after, err := os.Stat(path)
	if err != nil || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		return
	}
	if st, ok := after.Sys().(*syscall.Stat_t); ok && int(st.Uid) == os.Geteuid() {
		_ = os.Remove(path)
	}
}

// terminate ends a proven process: SHUTDOWN (when shutdown is set), then
// SIGTERM, then SIGKILL, and waits until the port refuses connections.
func terminate(ctx context.Context, n Node, o Options, p *proof, shutdown bool) StopResult {
	r := StopResult{Node: n, Pid: p.pid}
	fail := func(format string, a ...any) StopResult {
		r.Err = fmt.Errorf("stop node %d (pid %d): %s", n.Port, p.pid, fmt.Sprintf(format, a...))
		return r
	}
	if p.stopped(ctx) {
		_ = p.signal(ctx, syscall.SIGCONT)
	}
	var why []string
	done := false
	if shutdown {
		r.Action = "shutdown"
		sctx, cancel := context.WithTimeout(ctx, o.Grace)
		err := withNode(sctx, n, o, func(c *redis.Client) error { return c.Shutdown(sctx).Err() })
		var rerr redis.Error
		switch {
		case err != nil && errors.As(err, &rerr):
			// The server answered and refused (e.g. it could not save).
			why = append(why, "SHUTDOWN refused: "+err.Error())
		case errors.Is(err, syscall.ECONNREFUSED):
			why = append(why, "SHUTDOWN: "+err.Error())
		default:
			done = waitGone(sctx, p) == nil
			if !done {
				if err != nil {
					why = append(why, "SHUTDOWN: "+err.Error())
				}
				why = append(why, fmt.Sprintf("still running %s after SHUTDOWN", o.Grace))
			}
		}
		cancel()
	}
	for _, step := range []struct {
		action string
		sig    syscall.Signal
		wait   time.Duration
	}{{"sigterm", syscall.SIGTERM, termWait}, {"sigkill", syscall.SIGKILL, killWait}} {
		if done {
			break
		}
		if ctx.Err() != nil {
			return fail("interrupted: %v", ctx.Err())
		}
		r.Action = step.action
		if err := p.signal(ctx, step.sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fail("%s: %v", step.action, err)
		}
		wctx, cancel := context.WithTimeout(ctx, step.wait)
		done = waitGone(wctx, p) == nil
		cancel()
		if !done {
			why = append(why, fmt.Sprintf("still running %s after %s", step.wait, strings.ToUpper(step.action)))
		}
	}
	r.Detail = strings.Join(why, "; ")
	if !done {
		return fail("%s", r.Detail)
	}
	if why := waitPortClosed(ctx, n, portWait); why != "" {
		return fail("process exited but %s %s", n.Addr(), why)
	}
	return r
}

// waitPortClosed waits up to wait until n's port refuses connections,
// and returns "" then, or what the last attempt saw. Dials that only time
// out (seen when 300 nodes exit at once on 2 cores: the dialer itself gets
// no CPU within its 200ms) prove nothing: then a bind of the port decides
// whether anything still listens on it.
func waitPortClosed(ctx context.Context, n Node, wait time.Duration) string {
	pctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var last error
	for b := newBackoff(); ; {
		refused, err := dialPort(n)
		if refused {
			return ""
		}
		last = err
		if b.Wait(pctx) != nil {
			break
		}
	}
	if last == nil {
		return "still accepts connections"
	}
	if unbound(n) {
		return ""
	}
	return "connect: " + last.Error()
}

func waitGone(ctx context.Context, p *proof) error {
	for b := newBackoff(); !p.gone(ctx); {
		if err := b.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// pidAlive reports whether pid exists and is not a zombie. When the OS
// will not tell, it answers true: a live process must never be taken for a
// dead one.
func pidAlive(ctx context.Context, pid int) bool {
	proc, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	defer proc.Release()
	f, err := readFacts(ctx, proc, pid)
	if errors.Is(err, errExited) {
		return false
	}
	return err != nil || f.status != process.Zombie
}

// newBackoff polls 2ms, 4ms, ... up to 50ms apart: starts are fast.
func newBackoff() *poll.Backoff {
	return &poll.Backoff{Min: 2 * time.Millisecond, Max: 50 * time.Millisecond}
}

// logTail returns the last lines of a log file, formatted for an error.
func logTail(path string) string {
	if path == "" {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("\n  (log %s: %v)", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-4096, 0)
	b, _ := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if off > 0 && len(lines) > 0 {
		lines = lines[1:] // partial first line
	}
	if len(lines) > logLines {
		lines = lines[len(lines)-logLines:]
	}
	if len(lines) == 0 || (len(lines) == 1 && lines[0] == "") {
		return fmt.Sprintf("\n  (log %s is empty)", path)
	}
	return fmt.Sprintf("\n  last lines of %s:%s", path, indent(strings.Join(lines, "\n")))
}

func indent(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	return "\n    " + strings.ReplaceAll(s, "\n", "\n    ")
}
