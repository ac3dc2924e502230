package procmgr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/process"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

// statusOf asks gopsutil directly (not procmgr's proof) for pid's state.
func statusOf(t *testing.T, pid int) string {
	t.Helper()
	st, err := (&process.Process{Pid: int32(pid)}).Status()
	if err != nil || len(st) == 0 {
		t.Fatalf("status of pid %d: %v", pid, err)
	}
	return st[0]
}

// pingOnce reports whether n answers PING within a short timeout.
func pingOnce(ctx context.Context, n Node) error {
	c := redisconn.Options{Timeout: 300 * time.Millisecond}.SmallNode(n.Addr())
	defer c.Close()
	return c.Ping(ctx).Err()
}

func TestPauseResumeKill(t *testing.T) {
	redistest.Integration(t)
	nodes := testNodes(t, 1)
	n := nodes[0]
	ctx := testCtx(t, 60*time.Second)
	o := Options{} // rcluster's default 2s connection timeout
	mustStart(t, ctx, nodes, o)
	pid := pidOf(t, n)

	t0 := time.Now()
	if err := Pause(ctx, n, o); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	t.Logf("Pause: %s", time.Since(t0).Round(time.Millisecond))
	if got := statusOf(t, pid); got != process.Stop {
		t.Fatalf("after Pause pid %d is %q, want %q", pid, got, process.Stop)
	}
	if err := pingOnce(ctx, n); err == nil {
		t.Fatal("a paused node answered PING")
	}
	if err := Pause(ctx, n, o); err != nil {
		t.Fatalf("Pause of a paused node: %v", err)
	}
	// Paused is running, not stopped, and costs no connection timeout.
	t0 = time.Now()
	st := Inspect(ctx, nodes, o)[0]
	d := time.Since(t0)
	t.Logf("Inspect of a paused node: %s, %+v", d.Round(time.Millisecond), st)
	if !st.Running || !st.Paused || st.Responding || st.Unproven || st.Pid != pid {
		t.Fatalf("Inspect of a paused node: %+v, want running, paused, not responding, pid %d", st, pid)
	}
	if d >= 2*time.Second {
		t.Errorf("Inspect of a paused node took %s: it waited for the connection timeout", d)
	}

	t0 = time.Now()
	if err := Resume(ctx, n, o); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	t.Logf("Resume: %s", time.Since(t0).Round(time.Millisecond))
	if err := pingOnce(ctx, n); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
	if got := statusOf(t, pid); got == process.Stop {
		t.Fatalf("after Resume pid %d is still stopped", pid)
	}
	if err := Resume(ctx, n, o); err != nil {
		t.Fatalf("Resume of a running node: %v", err)
	}

	// Kill works on a paused node too (SIGKILL needs no SIGCONT).
	if err := Pause(ctx, n, o); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	if err := Kill(ctx, n, o); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	t.Logf("Kill of a paused node: %s", time.Since(t0).Round(time.Millisecond))
	if pidAlive(ctx, pid) {
		t.Fatalf("pid %d alive after Kill", pid)
	}
	assertPortFree(t, n)
	if log := readLog(t, n); strings.Contains(log, "bye bye") {
		t.Fatalf("Kill shut the node down gracefully:\n%s", log)
	}
	if got := pidOf(t, n); got != pid {
		t.Fatalf("pidfile after Kill names %d, want the dead %d", got, pid)
	}
	want := fmt.Sprintf("stale pidfile: pid %d is not running", pid)
	if st := Identify(ctx, n, o); st.Running || st.Detail != want {
		t.Fatalf("Identify after Kill: %+v, want %q", st, want)
	}
	for name, op := range map[string]func(context.Context, Node, Options) error{"kill": Kill, "pause": Pause, "resume": Resume} {
		err := op(ctx, n, o)
		if !errors.Is(err, ErrNotRunning) || !strings.HasPrefix(err.Error(), "node "+n.Addr()+": "+name+": not running: "+want) {
			t.Errorf("%s of a killed node: %v, want ErrNotRunning naming it", name, err)
		}
	}

	// Start brings it back with a new pid.
	mustStart(t, ctx, nodes, o)
	if got := pidOf(t, n); got == pid {
		t.Fatalf("restart kept pid %d", pid)
	}
	if _, err := Stop(ctx, nodes, o); err != nil {
		t.Fatal(err)
	}
}

// A pidfile naming a live stranger (a sleep) is never signalled by any
// fault operation, and the pidfile is kept.
func TestFaultsRefuseStranger(t *testing.T) {
	redistest.Integration(t)
	nodes := testNodes(t, 1)
	n := nodes[0]
	ctx, o := testCtx(t, 60*time.Second), testOpts()
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleep.Process.Kill(); _ = sleep.Wait() })
	spid := sleep.Process.Pid
	if err := os.WriteFile(n.PidFile, []byte(strconv.Itoa(spid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("stale pidfile: pid %d is not redis-server on port %d", spid, n.Port)
	for name, op := range map[string]func(context.Context, Node, Options) error{"kill": Kill, "pause": Pause, "resume": Resume} {
		err := op(ctx, n, o)
		t.Logf("%s: %v", name, err)
		if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "node "+n.Addr()+": "+name+": ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s of a stranger's pidfile: %v, want a refusal naming %q", name, err, want)
		}
		if got := statusOf(t, spid); got == process.Stop || got == process.Zombie {
			t.Fatalf("after %s the sleep %d is %q", name, spid, got)
		}
	}
	if got := pidOf(t, n); got != spid {
		t.Fatalf("pidfile now names %d, want %d kept", got, spid)
	}

	// A real node on the port, the pidfile still naming the sleep: INFO
	// proves the port is served by another pid, so still nothing is done.
	mustStart(t, ctx, nodes, o)
	real := pidOf(t, n)
	if err := os.WriteFile(n.PidFile, []byte(strconv.Itoa(spid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Kill(ctx, n, o); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Kill with a pidfile naming the sleep: %v", err)
	}
	if !pidAlive(ctx, spid) || !pidAlive(ctx, real) {
		t.Fatalf("sleep alive %v, node %d alive %v", pidAlive(ctx, spid), real, pidAlive(ctx, real))
	}
	c := o.Conn.SmallNode(n.Addr())
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("node disturbed: %v", err)
	}
	if err := os.WriteFile(n.PidFile, []byte(strconv.Itoa(real)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Stop(ctx, nodes, o); err != nil {
		t.Fatal(err)
	}
}

// Operations are bounded by ctx: a cancelled context returns at once with
// its error, and the node is left as it was.
func TestFaultsHonourContext(t *testing.T) {
	redistest.Integration(t)
	nodes := testNodes(t, 1)
	n := nodes[0]
	ctx, o := testCtx(t, 60*time.Second), testOpts()
	mustStart(t, ctx, nodes, o)
	done, cancel := context.WithCancel(ctx)
	cancel()
	for name, op := range map[string]func(context.Context, Node, Options) error{"kill": Kill, "pause": Pause, "resume": Resume} {
		if err := op(done, n, o); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v, want context.Canceled", name, err)
		}
	}
	if err := pingOnce(ctx, n); err != nil {
		t.Fatalf("node after a cancelled Kill: %v", err)
	}
	if _, err := Stop(ctx, nodes, o); err != nil {
		t.Fatal(err)
	}
}
