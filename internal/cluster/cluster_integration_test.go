package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/procmgr"
	"github.com/rcluster/rcluster/internal/provider"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
	"github.com/rcluster/rcluster/internal/ui"
)

// realCluster is a spec of n nodes on a free port block, torn down (purged)
// at cleanup.
func realCluster(t *testing.T, n, replicas int) *Cluster {
	t.Helper()
	redistest.RequireBinary(t, "redis-server")
	base := redistest.PortBlock(t, n)
	ports := make(spec.Ports, n)
	for i := range ports {
		ports[i] = base + i
	}
	s := &spec.Spec{Name: "it", Host: "127.0.0.1", Ports: ports, Replicas: replicas, Dir: t.TempDir(),
		RedisServer: "redis-server", Config: spec.Config{{Key: "cluster-node-timeout", Value: "1000"}}}
	var log bytes.Buffer
	c := &Cluster{Spec: s, Log: &log}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := (&Cluster{Spec: s}).Down(ctx, DownOptions{Purge: true}); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return c
}

// procNodes is how the process runtime describes c's nodes to procmgr.
func procNodes(c *Cluster) []procmgr.Node {
	var out []procmgr.Node
	for _, n := range c.Spec.Nodes() {
		out = append(out, provider.ProcNode(c.Spec, n))
	}
	return out
}

func statePids(t *testing.T, c *Cluster) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []int
	for _, st := range procmgr.Inspect(ctx, procNodes(c), procmgr.Options{Conn: c.Conn}) {
		out = append(out, st.Pid)
	}
	return out
}

func portsFree(t *testing.T, c *Cluster) {
	t.Helper()
	for _, p := range c.Spec.Ports {
		for _, q := range []int{p, p + 10000} {
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", q), 200*time.Millisecond)
			if err == nil {
				conn.Close()
				t.Errorf("port %d still accepts connections", q)
			}
		}
	}
}

// cancelOn is a status writer that cancels when a line contains word.
type cancelOn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	word   string
	cancel context.CancelFunc
}

func (w *cancelOn) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.word) {
		w.cancel()
	}
	return len(p), nil
}

// TestUpCancelledStopsWhatItStarted cancels Up right after its nodes
// started, and in the middle of forming: both leave nothing running and
// nothing that blocks the next Up.
func TestUpCancelledStopsWhatItStarted(t *testing.T) {
	redistest.Integration(t)
	for name, after := range map[string]string{
		"after-start": "Starting 3 redis-server nodes",
		"before-form": "Reading cluster state",
		"after-meet":  "CLUSTER MEET sent", // Form's log: slots assigned, nodes met
	} {
		t.Run(name, func(t *testing.T) { cancelledUp(t, after) })
	}
}

func cancelledUp(t *testing.T, after string) {
	c := realCluster(t, 3, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &cancelOn{word: after, cancel: cancel}
	c.Status, c.Log = ui.NewStatus(w), w
	err := c.Up(ctx, UpOptions{Timeout: 60 * time.Second})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted during") {
		t.Fatalf("Up = %v, want context.Canceled saying where", err)
	}
	t.Logf("status:\n%s", w.buf.String())
	if !strings.Contains(w.buf.String(), "Stopping the 3 node(s) this run started") {
		t.Errorf("status lacks the clean-up step:\n%s", w.buf.String())
	}
	portsFree(t, c)
	for _, p := range c.Spec.Ports {
		if _, err := os.Stat(c.Spec.NodesFile(p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("node %d: half-formed nodes.conf left behind: %v", p, err)
		}
	}

	// The next up forms the cluster; then up is a no-op.
	c.Status, c.Log = nil, nil
	uctx, ucancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer ucancel()
	if err := c.Up(uctx, UpOptions{}); err != nil {
		t.Fatalf("Up after an interrupted one: %v", err)
	}
	before := statePids(t, c)
	var out bytes.Buffer
	c.Status = ui.NewStatus(&out)
	start := time.Now()
	if err := c.Up(uctx, UpOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("MEASURED Up on a healthy cluster: %s", time.Since(start).Round(time.Millisecond))
	if after := statePids(t, c); fmt.Sprint(after) != fmt.Sprint(before) || !strings.Contains(out.String(), "already up") {
		t.Fatalf("healthy Up changed pids %v -> %v or did not say so: %s", before, after, out.String())
	}
}

func TestStatusOfDeadNodeComesFromPeers(t *testing.T) {
	redistest.Integration(t)
	c := realCluster(t, 3, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Up(ctx, UpOptions{}); err != nil {
		t.Fatal(err)
	}
	sts := c.NodeStatuses(ctx)
	for _, s := range sts {
		if !s.Running || s.Role != "master" || s.Slots == "" || s.State != "ok" || s.Memory == "" {
			t.Fatalf("healthy node status %+v", s)
		}
	}
	dead := sts[1]
	if err := syscall.Kill(dead.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var got NodeStatus
	deadline := time.Now().Add(20 * time.Second)
	for d := 10 * time.Millisecond; ; d = min(2*d, 200*time.Millisecond) {
		got = c.NodeStatuses(ctx)[1]
		if !got.Running && strings.Contains(got.Flags, "fail") && !strings.Contains(got.Flags, "fail?") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead node never shown as failed by its peers: %+v", got)
		}
		time.Sleep(d)
	}
	if got.ID != dead.ID || got.Role != "master" || got.Slots != dead.Slots || !strings.Contains(got.Flags, "disconnected") {
		t.Errorf("dead node as peers see it: %+v (was %+v)", got, dead)
	}
	if !strings.Contains(got.Detail, "not running") {
		t.Errorf("detail %q does not say the process is gone", got.Detail)
	}

	// Down reports the dead node without failing.
	var log bytes.Buffer
	c.Log = &log
	var st bytes.Buffer
	c.Status = ui.NewStatus(&st)
	if err := c.Down(ctx, DownOptions{}); err != nil {
		t.Fatalf("Down with a dead node: %v", err)
	}
	if !strings.Contains(st.String(), "2 stopped, 1 was not running") || !strings.Contains(log.String(), dead.Addr+": not running") {
		t.Errorf("Down's report:\n%s%s", st.String(), log.String())
	}
	portsFree(t, c)
}

// TestHealthyNeedsOwnProcesses: the one-round "already healthy" check of up
// holds for a formed cluster, and fails as soon as one node's pidfile names
// another process (a stranger answering on the port is not our node), or
// one pidfile is gone; up then takes the careful path (Inspect) instead.
func TestHealthyNeedsOwnProcesses(t *testing.T) {
	c := realCluster(t, 3, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Up(ctx, UpOptions{}); err != nil {
		t.Fatal(err)
	}
	nodes, addrs := procNodes(c), c.Spec.Addrs()
	prov, err := c.provider(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !c.healthy(ctx, prov, addrs) {
		t.Fatal("healthy = false right after up")
	}
	pidfile := nodes[1].PidFile
	orig, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, pidfile, fmt.Sprintf("%d\n", os.Getpid()))
	if c.healthy(ctx, prov, addrs) {
		t.Error("healthy = true while a pidfile names another process")
	}
	if err := os.Remove(pidfile); err != nil {
		t.Fatal(err)
	}
	if c.healthy(ctx, prov, addrs) {
		t.Error("healthy = true while a pidfile is missing")
	}
	writeFile(t, pidfile, string(orig))
	if !c.healthy(ctx, prov, addrs) {
		t.Error("healthy = false once the pidfile is back")
	}
}

// TestUpStartsMastersFirst: up spawns the replicas only once every master
// runs (see Cluster.start). Each node's log says, to the millisecond, when
// it started and when it was ready: no replica may start before the last
// master was ready (all at once, a replica starts within a few ms of the
// first master).
func TestUpStartsMastersFirst(t *testing.T) {
	c := realCluster(t, 6, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Up(ctx, UpOptions{}); err != nil {
		t.Fatalf("Up: %v\n%s", err, c.Log)
	}
	// "<pid>:<role> 24 Nov 2026 01:55:27.123 * <message>"
	logTime := func(port int, msg string) time.Time {
		t.Helper()
		b, err := os.ReadFile(c.Spec.LogFile(port))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.SplitN(line, " ", 6)
			if len(f) == 6 && strings.Contains(f[5], msg) {
				ts, err := time.Parse("2 Jan 2006 15:04:05.000", strings.Join(f[1:5], " "))
				if err != nil {
					t.Fatalf("node %d: log line %q: %v", port, line, err)
				}
				return ts
			}
		}
		t.Fatalf("node %d: no log line with %q in:\n%s", port, msg, b)
		return time.Time{}
	}
	ports := c.Spec.Ports
	var lastReady time.Time
	for _, p := range ports[:3] {
		if r := logTime(p, "Ready to accept connections"); r.After(lastReady) {
			lastReady = r
		}
	}
	for _, p := range ports[3:] {
		if s := logTime(p, "Redis is starting"); s.Before(lastReady) {
			t.Errorf("replica %d started at %s, before the last master was ready (%s)",
				p, s.Format("15:04:05.000"), lastReady.Format("15:04:05.000"))
		}
	}
}
