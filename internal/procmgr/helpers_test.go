package procmgr

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/process"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

// testNodes writes n minimal daemonizing cluster configs on a fresh port
// block (extra lines appended to every conf) and registers a cleanup that
// kills whatever redis-server the pidfiles or logs name.
func testNodes(t *testing.T, n int, extra ...string) []Node {
	t.Helper()
	bin := redistest.RequireBinary(t, "redis-server")
	base := redistest.PortBlock(t, n)
	nodes := make([]Node, n)
	for i := range nodes {
		port := base + i
		dir := t.TempDir()
		nodes[i] = Node{
			Host: "127.0.0.1", Port: port, Binary: bin,
			ConfFile: filepath.Join(dir, "redis.conf"),
			PidFile:  filepath.Join(dir, "redis.pid"),
			LogFile:  filepath.Join(dir, "redis.log"),
		}
		writeConf(t, nodes[i], extra...)
	}
	// Registered after t.TempDir, so it runs before the dirs are removed.
	t.Cleanup(func() { killNodes(t, nodes) })
	return nodes
}

func writeConf(t *testing.T, n Node, extra ...string) {
	t.Helper()
	lines := []string{
		"port " + strconv.Itoa(n.Port),
		"bind 127.0.0.1",
		"daemonize yes",
		"pidfile " + n.PidFile,
		"logfile " + n.LogFile,
		"dir " + filepath.Dir(n.ConfFile),
		"cluster-enabled yes",
		"cluster-config-file nodes.conf",
		"cluster-node-timeout 2000",
		"appendonly yes",
		"save \"\"",
	}
	lines = append(lines, extra...)
	if err := os.WriteFile(n.ConfFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

var anyLogPid = regexp.MustCompile(`(?m)^(\d+):[A-Z] `)

// killNodes SIGKILLs every redis-server named by a node's pidfile or log
// whose command line names the node's port or conf, and waits for it to go.
// It is deliberately independent of the code under test.
func killNodes(t *testing.T, nodes []Node) {
	for _, n := range nodes {
		pids := map[int]bool{}
		if b, err := os.ReadFile(n.PidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				pids[pid] = true
			}
		}
		if b, err := os.ReadFile(n.LogFile); err == nil {
			for _, m := range anyLogPid.FindAllStringSubmatch(string(b), -1) {
				pid, _ := strconv.Atoi(m[1])
				pids[pid] = true
			}
		}
		for pid := range pids {
			// gopsutil directly, not procmgr's proof: the cleanup must not
			// depend on the code under test.
			gp := &process.Process{Pid: int32(pid)}
			name, _ := gp.Name()
			args, _ := gp.CmdlineSlice()
			c := strings.Join(args, " ") + " "
			if name != "redis-server" ||
				!(strings.Contains(c, ":"+strconv.Itoa(n.Port)+" ") || strings.Contains(c, n.ConfFile)) {
				continue
			}
			t.Logf("cleanup: killing leftover redis-server pid %d (port %d)", pid, n.Port)
			_ = syscall.Kill(pid, syscall.SIGCONT)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline := time.Now().Add(5 * time.Second)
			for pidAlive(context.Background(), pid) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}

func testOpts() Options {
	return Options{Conn: redisconn.Options{Timeout: time.Second}, Ready: 10 * time.Second}
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustStart(t *testing.T, ctx context.Context, nodes []Node, o Options) {
	t.Helper()
	if err := Start(ctx, nodes, o); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

// assertPortFree fails unless nothing accepts connections on n's port.
func assertPortFree(t *testing.T, n Node) {
	t.Helper()
	c, err := net.DialTimeout("tcp", n.Addr(), time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("port %d still accepts connections", n.Port)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("port %d: unexpected dial error %v", n.Port, err)
	}
}

func pidOf(t *testing.T, n Node) int {
	t.Helper()
	pid, err := readPidfile(n.PidFile)
	if err != nil {
		t.Fatalf("node %d: %v", n.Port, err)
	}
	return pid
}

func readLog(t *testing.T, n Node) string {
	t.Helper()
	b, err := os.ReadFile(n.LogFile)
	if err != nil {
		t.Fatalf("node %d log: %v", n.Port, err)
	}
	return string(b)
}

// waitDead polls until pid is gone (bounded).
func waitDead(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for pidAlive(context.Background(), pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not exit", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
