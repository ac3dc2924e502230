package procmgr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// proof is a live process proven to be a node. proc holds a pidfd (Go opens
// one in os.FindProcess on Linux), so signals sent through it cannot reach a
// process that reused the pid; start (the kernel start time) guards the
// fallback where pidfds are unavailable.
type proof struct {
	pid   int
	proc  *os.Process
	start string
}

func (p *proof) release() {
	if p != nil && p.proc != nil {
		_ = p.proc.Release()
	}
}

// gone reports whether the proven process has exited (a zombie counts as
// exited: its port and files are already released).
func (p *proof) gone() bool {
	if err := p.proc.Signal(syscall.Signal(0)); err != nil && !errors.Is(err, syscall.EPERM) {
		return true
	}
	st, err := readStat(p.pid)
	if err != nil {
		return true
	}
	return st.state == "Z" || st.state == "X" || st.start != p.start
}

// signal sends sig only if the pid still names the proven process.
func (p *proof) signal(sig syscall.Signal) error {
	if p.gone() {
		return os.ErrProcessDone
	}
	return p.proc.Signal(sig)
}

// stopped reports whether the process is stopped (SIGSTOP / job control).
func (p *proof) stopped() bool {
	st, err := readStat(p.pid)
	return err == nil && (st.state == "T" || st.state == "t")
}

// Identify reports whether n's process is running, proven by its pidfile:
// the pid must be alive and be this node, either because the node's port
// answers INFO server with process_id == pid and tcp_port == port, or (when
// the port does not answer: SIGSTOPped, loading, wrong password) because
// /proc/<pid> shows a redis-server executable whose process title or
// command line names this port or this node's config file. A pidfile naming
// any other process is reported as "stale pidfile: ..." and Pid is 0.
// Responding is true when the node answered PING. Identify never blocks
// longer than about two o.Conn timeouts.
func Identify(ctx context.Context, n Node, o Options) State {
	st, p := identify(ctx, n, o)
	p.release()
	return st
}

func identify(ctx context.Context, n Node, o Options) (State, *proof) {
	var st State
	info, infoErr := infoServer(ctx, n, o, &st.Responding)
	served := ""
	if infoErr == nil {
		served = fmt.Sprintf(" (port %d is served by redis-server pid %s)", n.Port, info["process_id"])
	}

	pid, err := readPidfile(n.PidFile)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			st.Detail = "no pidfile" + served
		} else {
			st.Detail = err.Error() + served
		}
		return st, nil
	}
	proc, err := os.FindProcess(pid) // pidfd first, then the checks: no reuse race
	if err != nil {
		st.Detail = fmt.Sprintf("stale pidfile: pid %d: %v", pid, err)
		return st, nil
	}
	stat, statErr := readStat(pid)
	if sigErr := proc.Signal(syscall.Signal(0)); (sigErr != nil && !errors.Is(sigErr, syscall.EPERM)) ||
		statErr != nil || stat.state == "Z" || stat.state == "X" {
		_ = proc.Release()
		st.Detail = fmt.Sprintf("stale pidfile: pid %d is not running", pid)
		return st, nil
	}
	p := &proof{pid: pid, proc: proc, start: stat.start}
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
	if ok, _ := procIsNode(pid, n); ok {
		st.Pid, st.Running = pid, true
		st.Detail = "not answering: " + infoErr.Error()
		return st, p
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

type procStat struct {
	state string // R, S, D, T, t, Z, X, ...
	start string // start time in clock ticks since boot
}

// readStat parses /proc/<pid>/stat (the command name may contain spaces
// and parentheses, so fields are counted after the last ')').
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(string(b))
}

func parseStat(s string) (procStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("bad /proc stat %q", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("bad /proc stat %q", s)
	}
	return procStat{state: f[0], start: f[19]}, nil
}

// procIsNode checks /proc/<pid> without talking to the process: its
// executable must be redis-server (or n.Binary, symlinks resolved: Debian's
// redis-server is a link to redis-check-rdb) and its command line must name
// n's port (redis's process title "redis-server 127.0.0.1:7001 [cluster]")
// or n's config file (the title before redis sets it).
func procIsNode(pid int, n Node) (bool, string) {
	st, err := readStat(pid)
	if err != nil {
		return false, err.Error()
	}
	if st.state == "Z" || st.state == "X" {
		return false, "exited"
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false, fmt.Sprintf("cannot read executable: %v", err)
	}
	if !exeIsRedis(exe, n.binary()) {
		return false, "executable is " + exe
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false, err.Error()
	}
	if !cmdlineNamesNode(string(b), n) {
		return false, fmt.Sprintf("command line %q names neither port %d nor %s", strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " "), n.Port, n.ConfFile)
	}
	return true, ""
}

func exeIsRedis(exe, binary string) bool {
	exe = strings.TrimSuffix(exe, " (deleted)")
	if filepath.Base(exe) == "redis-server" {
		return true
	}
	if p, err := exec.LookPath(binary); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil && r == exe {
			return true
		}
		if abs, err := filepath.Abs(p); err == nil && abs == exe {
			return true
		}
	}
	return false
}

// cmdlineNamesNode reports whether a /proc cmdline (NUL-separated; redis's
// process title is one space-separated string) has a token "<addr>:<port>"
// or the node's config file.
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
