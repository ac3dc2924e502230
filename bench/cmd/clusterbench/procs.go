package main

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Every redis-server a run starts, by either path, works in a directory
// under that run's private temp root (Redis chdirs to its `dir`). That makes
// "kill what this run started" exact without pid bookkeeping across process
// boundaries: rcluster may daemonize its nodes, which then are not our
// children. Pidfiles under the root are a second source for a node caught
// before it chdir'ed.

// redisUnder returns the pids of this user's redis-server processes whose
// working directory is under root or whose pid is in a *.pid file under root.
func redisUnder(root string) []int {
	root = filepath.Clean(root)
	seen := map[int]bool{}
	var out []int
	add := func(pid int) {
		if pid > 0 && !seen[pid] && isRedis(pid) && !isDead(pid) {
			seen[pid] = true
			out = append(out, pid)
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd")
		if err != nil {
			continue
		}
		// A removed directory reads as "<path> (deleted)".
		cwd = strings.TrimSuffix(cwd, " (deleted)")
		if cwd == root || strings.HasPrefix(cwd, root+string(filepath.Separator)) {
			add(pid)
		}
	}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".pid") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			add(pid)
		}
		return nil
	})
	return out
}

// isRedis reports whether pid runs Redis. Debian installs redis-server as a
// symlink to redis-check-rdb (one binary picking its mode from argv[0]), so
// both the executable and the (retitled) command line are looked at.
func isRedis(pid int) bool {
	p := "/proc/" + strconv.Itoa(pid)
	if exe, err := os.Readlink(p + "/exe"); err == nil {
		b := filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
		if strings.HasPrefix(b, "redis-server") || strings.HasPrefix(b, "redis-check-") {
			return true
		}
	}
	cmdline, err := os.ReadFile(p + "/cmdline")
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(cmdline), "\x00")
	argv0, _, _ = strings.Cut(argv0, " ")
	return strings.HasPrefix(filepath.Base(argv0), "redis-server")
}

// isDead reports whether pid is gone or dead but not yet reaped. A zombie
// thread-group leader is not enough: Redis has background threads, and a
// SIGKILLed Redis shows its leader as Z while the other threads still exit
// and its sockets are still open. Dead means no thread but the leader left.
func isDead(pid int) bool {
	p := "/proc/" + strconv.Itoa(pid)
	b, err := os.ReadFile(p + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return true
	}
	if st := s[i+2]; st != 'Z' && st != 'X' {
		return false
	}
	tasks, err := os.ReadDir(p + "/task")
	return err != nil || len(tasks) <= 1
}

// killUnder SIGKILLs every redis-server found by redisUnder and waits (at
// most 5 s) until they are gone. It returns how many it found.
func killUnder(root string) int {
	pids := redisUnder(root)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGCONT)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, pid := range pids {
		_ = poll(ctx, time.Millisecond, 50*time.Millisecond, func() (bool, error) { return isDead(pid), nil })
	}
	return len(pids)
}

// children tracks processes this harness started itself so they can be
// killed and reaped.
type children struct{ cmds []*exec.Cmd }

func (c *children) add(cmd *exec.Cmd) { c.cmds = append(c.cmds, cmd) }

// killAll SIGKILLs and reaps every tracked child still running.
func (c *children) killAll() {
	for _, cmd := range c.cmds {
		if cmd.Process == nil || cmd.ProcessState != nil {
			continue
		}
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	c.cmds = nil
}

// poll calls check with exponential backoff from minDelay to maxDelay until
// it reports done, returns an error, or ctx ends.
func poll(ctx context.Context, minDelay, maxDelay time.Duration, check func() (bool, error)) error {
	delay := minDelay
	for {
		done, err := check()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if delay *= 2; delay > maxDelay {
			delay = maxDelay
		}
	}
}
