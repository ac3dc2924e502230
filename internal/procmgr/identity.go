package procmgr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shirou/gopsutil/v4/process"
)

// Process facts (executable, command line, state, create time, uids) come
// from gopsutil, which reads /proc on Linux and sysctl/libproc/ps on macOS,
// so the proofs below hold on both.
func init() {
	// gopsutil derives create times from the boot time, and inside a
	// container it computes that from /proc/uptime and the clock on every
	// call: two reads of one process's create time can then differ by a
	// second. Cached, they are comparable, which the pid-reuse guard needs.
	process.EnableBootTimeCache(true)
}

// errExited says a pid names no live process (gone, or a zombie).
var errExited = errors.New("not running")

// proof is a live process proven to be a node. proc holds a pidfd (Go opens
// one in os.FindProcess on Linux), so signals sent through it cannot reach a
// process that reused the pid; created (the create time) guards the
// platforms without pidfds (macOS), and every check made after the proof.
type proof struct {
	pid     int
	proc    *os.Process
	created int64 // ms since the epoch, as gopsutil reports it
}

func (p *proof) release() {
	if p != nil && p.proc != nil {
		_ = p.proc.Release()
	}
}

// openProof opens pid (the pidfd first, then the checks: no reuse race)
// and records its create time. The error is errExited when pid is not
// running or is a zombie, another one when the OS will not tell.
func openProof(ctx context.Context, pid int) (*proof, error) {
	proc, err := os.FindProcess(pid)
	if err != nil {
		return nil, errExited
	}
	f, err := readFacts(ctx, proc, pid)
	if err == nil && f.status == process.Zombie {
		err = errExited
	}
	if err != nil {
		_ = proc.Release()
		return nil, err
	}
	return &proof{pid: pid, proc: proc, created: f.created}, nil
}

// facts are what the OS tells about a live pid.
type facts struct {
	created int64
	status  string // process.Running, process.Stop, process.Zombie, ...
}

// readFacts returns pid's create time and state. Whether the process is
// gone is decided by signal 0 (through proc's pidfd where there is one), so
// an OS that will not answer never makes a live process look dead: that
// is an error other than errExited.
func readFacts(ctx context.Context, proc *os.Process, pid int) (facts, error) {
	if exited(proc) {
		return facts{}, errExited
	}
	gp := &process.Process{Pid: int32(pid)} // fresh: nothing cached
	created, err := gp.CreateTimeWithContext(ctx)
	if err == nil {
		var st []string
		if st, err = gp.StatusWithContext(ctx); err == nil && len(st) > 0 {
			return facts{created: created, status: st[0]}, nil
		}
	}
	if exited(proc) { // it exited while we asked
		return facts{}, errExited
	}
	return facts{}, fmt.Errorf("pid %d: process facts: %w", pid, err)
}

func exited(proc *os.Process) bool {
	return errors.Is(proc.Signal(syscall.Signal(0)), os.ErrProcessDone)
}

// gone reports whether the proven process has exited (a zombie counts as
// exited: its port and files are already released) or its pid names
// another process now. When the OS will not tell, it is not gone.
func (p *proof) gone(ctx context.Context) bool {
	f, err := readFacts(ctx, p.proc, p.pid)
	if errors.Is(err, errExited) {
		return true
	}
	return err == nil && (f.status == process.Zombie || f.created != p.created)
}

// signal sends sig only if the pid still names the proven process.
func (p *proof) signal(ctx context.Context, sig syscall.Signal) error {
	if p.gone(ctx) {
		return os.ErrProcessDone
	}
	return p.proc.Signal(sig)
}

// stopped reports whether the process is stopped (SIGSTOP / job control).
func (p *proof) stopped(ctx context.Context) bool {
	f, err := readFacts(ctx, p.proc, p.pid)
	return err == nil && f.created == p.created && f.status == process.Stop
}

// Identify reports whether n's process is running, proven by its pidfile:
// the pid must be alive and be this node, either because the node's port
// answers INFO server with process_id == pid and tcp_port == port, or (when
// the port does not answer: SIGSTOPped, loading, wrong password) because
// the OS shows a redis-server or valkey-server executable whose process
// title or command line names this port or this node's config file. A
// pidfile naming any other process is reported as "stale pidfile: ..." and
// Pid is 0. A live process whose identity the OS will not show (another
// user's process on macOS) is reported Unproven, never as stopped.
// Responding is true when the node answered PING. Identify never blocks
// longer than about two o.Conn timeouts.
func Identify(ctx context.Context, n Node, o Options) State {
	st, p := identify(ctx, n, o)
	p.release()
	return st
}

func identify(ctx context.Context, n Node, o Options) (State, *proof) {
	var st State
	pid, pidErr := readPidfile(n.PidFile)
	var p *proof
	var openErr error
	if pidErr == nil {
		p, openErr = openProof(ctx, pid)
	}
	// A stopped process answers nothing: asking would only cost a timeout.
	if p != nil && p.stopped(ctx) {
		if v, _ := procIsNode(ctx, pid, p.created, n); v == isNode {
			st.Pid, st.Running, st.Paused = pid, true, true
			st.Detail = "not answering: stopped (SIGSTOP)"
			return st, p
		}
	}

	info, infoErr := infoServer(ctx, n, o, &st.Responding)
	served := ""
	if infoErr == nil {
		served = fmt.Sprintf(" (port %d is served by redis-server pid %s)", n.Port, info["process_id"])
	}
	switch {
	case errors.Is(pidErr, os.ErrNotExist):
		st.Detail = "no pidfile" + served
		return st, nil
	case pidErr != nil:
		st.Detail = pidErr.Error() + served
		return st, nil
	case errors.Is(openErr, errExited):
		st.Detail = fmt.Sprintf("stale pidfile: pid %d is not running", pid)
		return st, nil
	case openErr != nil:
		st.Pid, st.Unproven = pid, true
		st.Detail = fmt.Sprintf("cannot prove pid %d is redis-server on port %d: %v; left alone", pid, n.Port, openErr)
		return st, nil
	}
	notNode := fmt.Sprintf("stale pidfile: pid %d is not redis-server on port %d", pid, n.Port)

	if infoErr == nil {
		if info["process_id"] == strconv.Itoa(pid) && info["tcp_port"] == strconv.Itoa(n.Port) {
			st.Pid, st.Running = pid, true
			return st, p
		}
		p.release()
		st.Detail = notNode + served
		return st, nil
	}
	switch v, why := procIsNode(ctx, pid, p.created, n); v {
	case isNode:
		st.Pid, st.Running = pid, true
		st.Detail = "not answering: " + infoErr.Error()
		return st, p
	case unknown:
		p.release()
		st.Pid, st.Unproven = pid, true
		st.Detail = fmt.Sprintf("cannot prove pid %d is redis-server on port %d: %s; not answering: %v; left alone", pid, n.Port, why, infoErr)
		return st, nil
	}
	p.release()
	st.Detail = notNode
	return st, nil
}

// infoServer asks n for INFO server, bounded by the connection timeout.
// When pinged is not nil, it also sends PING in the same round trip and
// reports whether it was answered.
func infoServer(ctx context.Context, n Node, o Options, pinged *bool) (map[string]string, error) {
	var info *redis.StringCmd
	var ping *redis.StatusCmd
	err := withNode(ctx, n, o, func(c *redis.Client) error {
		// Pipelined's error is the first failed command's: INFO's is
		// returned, PING's is reported through pinged.
		_, _ = c.Pipelined(ctx, func(pl redis.Pipeliner) error {
			info = pl.Info(ctx, "server")
			if pinged != nil {
				ping = pl.Ping(ctx)
			}
			return nil
		})
		if err := info.Err(); err != nil {
			return err
		}
		if ping != nil {
			*pinged = ping.Err() == nil
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return parseInfo(info.Val()), nil
}

// withNode runs fn with a fresh client to n. The client dials once
// (redisconn's DialerRetries 1) and is new for every call, so a refused
// dial fails at once and no cached dial error outlives the call: polling
// stays fast.
func withNode(ctx context.Context, n Node, o Options, fn func(*redis.Client) error) error {
	c := o.Conn.SmallNode(n.Addr())
	defer c.Close()
	return fn(c)
}

// Serves reports whether the redis-server that answered at n's address
// with this process id and port (from its INFO server) is n's own process:
// the pid n's pidfile names, on n's port. This is the proof Identify makes,
// for callers that already asked INFO server on their own connection.
func Serves(n Node, pid, port int) bool {
	if pid <= 0 || port != n.Port {
		return false
	}
	filePid, err := readPidfile(n.PidFile)
	return err == nil && filePid == pid
}

// parseInfo turns an INFO reply into key -> value.
func parseInfo(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// readPidfile returns the pid in path.
func readPidfile(path string) (int, error) {
	if path == "" {
		return 0, fmt.Errorf("no pidfile configured: %w", os.ErrNotExist)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("bad pidfile %s: %q", path, bytes.TrimSpace(b))
	}
	return pid, nil
}

// verdict is what the OS's process facts say of a pid and a node.
type verdict int

const (
	notNode verdict = iota
	isNode
	unknown // the OS will not show enough to tell
)

// procIsNode decides from the OS's facts about live pid (created is its
// create time), without talking to it, whether it is n: its executable
// must be redis-server or valkey-server (or n.Binary, symlinks resolved:
// Debian's redis-server is a link to redis-check-rdb) and its command line
// must name n's port (the process title "redis-server 127.0.0.1:7001
// [cluster]") or n's config file (the title before redis sets it). Either
// fact alone can disprove; proving takes both. When the OS will not show
// them (another user's process on macOS), the pidfile can still disprove:
// see disproof. Otherwise the verdict is unknown, and why says what was
// unreadable.
func procIsNode(ctx context.Context, pid int, created int64, n Node) (verdict, string) {
	gp := &process.Process{Pid: int32(pid)}
	exe, exeErr := gp.ExeWithContext(ctx)
	args, cmdErr := gp.CmdlineSliceWithContext(ctx)
	if exeErr == nil && !exeIsRedis(exe, n.binary()) {
		return notNode, "executable is " + exe
	}
	if cmdErr == nil && !cmdlineNamesNode(strings.Join(args, "\x00"), n) {
		return notNode, fmt.Sprintf("command line %q names neither port %d nor %s", strings.TrimSpace(strings.Join(args, " ")), n.Port, n.ConfFile)
	}
	if exeErr == nil && cmdErr == nil {
		return isNode, ""
	}
	if why := disproof(ctx, gp, created, n.PidFile); why != "" {
		return notNode, why
	}
	var why []string
	if exeErr != nil {
		why = append(why, fmt.Sprintf("cannot read its executable: %v", exeErr))
	}
	if cmdErr != nil {
		why = append(why, fmt.Sprintf("cannot read its command line: %v", cmdErr))
	}
	return unknown, strings.Join(why, "; ")
}

// pidfileSlack absorbs clock granularity between a process's create time
// and the time its pidfile was written.
const pidfileSlack = 2 * time.Second

// disproof returns why the process gp (created at created) cannot be the
// one that wrote pidfile, or "" when nothing shows it: a redis-server
// writes its own pidfile after it started, so the file is owned by one of
// the process's uids and was not written before the process existed.
func disproof(ctx context.Context, gp *process.Process, created int64, pidfile string) string {
	fi, err := os.Stat(pidfile)
	if err != nil {
		return ""
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uids, err := gp.UidsWithContext(ctx); err == nil && len(uids) > 0 && !slices.Contains(uids, st.Uid) {
			return fmt.Sprintf("it runs as uid %d but %s is owned by uid %d", uids[0], pidfile, st.Uid)
		}
	}
	if t := time.UnixMilli(created); t.After(fi.ModTime().Add(pidfileSlack)) {
		return fmt.Sprintf("it started at %s, after %s was written (%s)",
			t.Format(time.RFC3339), pidfile, fi.ModTime().Format(time.RFC3339))
	}
	return ""
}

// serverNames are the executables a node may run: Redis, and Valkey
// (whose INFO says server_name:valkey).
var serverNames = []string{"redis-server", "valkey-server"}

// exeIsRedis reports whether exe (a process's executable, symlinks
// resolved by the OS) is a redis-server or valkey-server, or the binary a
// spec names under any name it links to.
func exeIsRedis(exe, binary string) bool {
	exe = strings.TrimSuffix(exe, " (deleted)")
	if slices.Contains(serverNames, filepath.Base(exe)) {
		return true
	}
	for _, name := range append([]string{binary}, serverNames...) {
		p, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if r, err := filepath.EvalSymlinks(p); err == nil && r == exe {
			return true
		}
		if abs, err := filepath.Abs(p); err == nil && abs == exe {
			return true
		}
	}
	return false
}

// cmdlineNamesNode reports whether a command line (NUL-separated
// arguments; redis's process title is one space-separated string) has a
// token "<addr>:<port>" or the node's config file.
func cmdlineNamesNode(cmdline string, n Node) bool {
	suffix := ":" + strconv.Itoa(n.Port)
	for _, tok := range strings.FieldsFunc(cmdline, func(r rune) bool { return r == 0 || r == ' ' }) {
		if strings.HasSuffix(tok, suffix) && len(tok) > len(suffix) {
			return true
		}
		if n.ConfFile != "" && tok == n.ConfFile {
			return true
		}
	}
	return false
}
