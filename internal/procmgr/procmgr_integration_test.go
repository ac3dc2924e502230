package procmgr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/process"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

func TestStartInspectStopThreeNodes(t *testing.T) {
	redistest.Integration(t)
	nodes := testNodes(t, 3)
	ctx, o := testCtx(t, 60*time.Second), testOpts()

	t0 := time.Now()
	mustStart(t, ctx, nodes, o)
	t.Logf("Start of 3 nodes: %s", time.Since(t0).Round(time.Millisecond))

	states := Inspect(ctx, nodes, o)
	for i, st := range states {
		n := nodes[i]
		if !st.Running || !st.Responding {
			t.Fatalf("node %d: state %+v, want running and responding", n.Port, st)
		}
		info, err := infoServer(ctx, n, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := pidOf(t, n); st.Pid != want || info["process_id"] != strconv.Itoa(want) {
			t.Fatalf("node %d: Inspect pid %d, pidfile %d, INFO %s", n.Port, st.Pid, want, info["process_id"])
		}
		// Spawned in its own session: not in our process group.
		if pgid, err := syscall.Getpgid(st.Pid); err != nil || pgid == syscall.Getpgrp() {
			t.Fatalf("node %d: pgid %d (err %v) equals ours", n.Port, pgid, err)
		}
	}

	pids := make([]int, len(nodes))
	for i, st := range states {
		pids[i] = st.Pid
	}
	t0 = time.Now()
	res, err := Stop(ctx, nodes, o)
	t.Logf("Stop of 3 nodes: %s", time.Since(t0).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for i, r := range res {
		n := nodes[i]
		if r.Node.Port != n.Port || r.Action != "shutdown" || r.Pid != pids[i] {
			t.Fatalf("result %d = %+v, want shutdown of pid %d on %d", i, r, pids[i], n.Port)
		}
		if log := readLog(t, n); !strings.Contains(log, "ready to exit, bye bye") {
			t.Fatalf("node %d log lacks graceful exit:\n%s", n.Port, log)
		}
		if pidAlive(ctx, pids[i]) {
			t.Fatalf("pid %d still alive after Stop", pids[i])
		}
		assertPortFree(t, n)
		if st := Identify(ctx, n, o); st.Running || st.Pid != 0 || st.Detail != "no pidfile" {
			t.Fatalf("after stop node %d: %+v", n.Port, st)
		}
	}
}

func TestStartSkipsRunningNode(t *testing.T) {
	redistest.Integration(t)
	nodes := testNodes(t, 2)
	ctx, o := testCtx(t, 60*time.Second), testOpts()
	mustStart(t, ctx, nodes[:1], o)
	before := pidOf(t, nodes[0])
	mustStart(t, ctx, nodes, o)
	if after := pidOf(t, nodes[0]); after != before {
		t.Fatalf("running node restarted: pid %d -> %d", before, after)
	}
	if st := Identify(ctx, nodes[1], o); !st.Running || !st.Responding {
		t.Fatalf("second node: %+v", st)
	}
	if _, err := Stop(ctx, nodes, o); err != nil {
		t.Fatal(err)
	}
}

func TestStopFlushesAOFAndRestartKeepsData(t *testing.T) {
	redistest.Integration(t)
	nodes := testNodes(t, 1)
	n := nodes[0]
	ctx, o := testCtx(t, 60*time.Second), testOpts()
	mustStart(t, ctx, nodes, o)

	c := o.Conn.Node(n.Addr())
	defer c.Close()
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("ADDSLOTSRANGE: %v", err)
	}
	// A fresh master refuses writes (CLUSTERDOWN) for ~2s: poll.
	var err error
	for b := newBackoff(); ; {
		if err = c.Set(ctx, "durable", "yes-42", 0).Err(); err == nil {
			break
		}
		if b.Wait(ctx) != nil {
			t.Fatalf("SET never succeeded: %v", err)
		}
	}
	res, err := Stop(ctx, nodes, o)
	if err != nil || res[0].Action != "shutdown" {
		t.Fatalf("Stop: %+v, %v", res, err)
	}
	if log := readLog(t, n); !strings.Contains(log, "Calling fsync() on the AOF file") {
		t.Fatalf("no AOF fsync on shutdown in log:\n%s", log)
	}
	mustStart(t, ctx, nodes, o)
	var got string
	for b := newBackoff(); ; {
		if got, err = c.Get(ctx, "durable").Result(); err == nil {
			break
		}
		if b.Wait(ctx) != nil {
			t.Fatalf("GET after restart: %v", err)
		}
	}
	if got != "yes-42" {
		t.Fatalf("GET after restart = %q, want yes-42", got)
	}
	if _, err := Stop(ctx, nodes, o); err != nil {
		t.Fatal(err)
	}
}

func TestStopDeadNodeIsNotRunning(t *testing.T) {
	redistest.Integration(t)
	nodes := testNodes(t, 1)
	n := nodes[0]
	ctx, o := testCtx(t, 60*time.Second), testOpts()
	mustStart(t, ctx, nodes, o)
	pid := pidOf(t, n)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDead(t, pid)

	st := Identify(ctx, n, o)
	if st.Running || st.Pid != 0 || st.Detail != fmt.Sprintf("stale pidfile: pid %d is not running", pid) {
		t.Fatalf("Identify after kill -9: %+v", st)
	}
	res, err := Stop(ctx, nodes, o)
	if err != nil {
		t.Fatalf("Stop of dead node: %v", err)
	}
	if res[0].Action != "not running" || res[0].Pid != 0 {
		t.Fatalf("result %+v", res[0])
	}
	if _, err := os.Stat(n.PidFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale pidfile of dead pid not removed: %v", err)
	}
}

func TestStalePidfileNeverSignalled(t *testing.T) {
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
	if st := Inspect(ctx, nodes, o)[0]; st.Running || st.Responding || st.Pid != 0 || st.Detail != want {
		t.Fatalf("Inspect: %+v, want detail %q", st, want)
	}
	res, err := Stop(ctx, nodes, o)
	if err != nil || res[0].Action != "not running" || res[0].Detail != want {
		t.Fatalf("Stop: %+v, %v", res, err)
	}
	if f, err := readFacts(ctx, sleep.Process, spid); err != nil || f.status == process.Zombie || f.status == process.Stop {
		t.Fatalf("sleep %d was disturbed: %+v %v", spid, f, err)
	}
	if _, err := os.Stat(n.PidFile); err != nil {
		t.Fatalf("pidfile naming a live foreign process was removed: %v", err)
	}

	// Start over the stale pidfile: redis rewrites it, the sleep lives on.
	mustStart(t, ctx, nodes, o)
	if pid := pidOf(t, n); pid == spid {
		t.Fatalf("pidfile still names sleep")
	}
	if _, err := Stop(ctx, nodes, o); err != nil {
		t.Fatal(err)
	}
	if err := sleep.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("sleep died: %v", err)
	}
}

func TestStopSIGSTOPpedNode(t *testing.T) {
	redistest.Integration(t)
	nodes := testNodes(t, 1)
	n := nodes[0]
	ctx := testCtx(t, 60*time.Second)
	o := Options{} // default 2s connection timeout, as rcluster uses it
	mustStart(t, ctx, nodes, o)
	pid := pidOf(t, n)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })

	t0 := time.Now()
	st := Inspect(ctx, nodes, o)[0]
	t.Logf("Inspect of a SIGSTOPped node: %s", time.Since(t0).Round(time.Millisecond))
	if !st.Running || st.Responding || st.Pid != pid {
		t.Fatalf("Inspect of stopped node: %+v", st)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("Inspect took %s", d)
	}

	t0 = time.Now()
	res, err := Stop(ctx, nodes, o)
	d := time.Since(t0)
	t.Logf("Stop of a SIGSTOPped node: %s, %+v", d.Round(time.Millisecond), res[0])
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if d > 15*time.Second {
		t.Fatalf("Stop took %s", d)
	}
	if pidAlive(ctx, pid) {
		t.Fatalf("pid %d alive", pid)
	}
	assertPortFree(t, n)
}

func TestStopEscalatesToSIGTERMWhenShutdownRefused(t *testing.T) {
	redistest.Integration(t)
	nodes := testNodes(t, 1, `rename-command SHUTDOWN ""`)
	n := nodes[0]
	ctx, o := testCtx(t, 60*time.Second), testOpts()
	mustStart(t, ctx, nodes, o)
	pid := pidOf(t, n)
	res, err := Stop(ctx, nodes, o)
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	r := res[0]
	if r.Action != "sigterm" || r.Pid != pid || !strings.Contains(r.Detail, "SHUTDOWN refused") {
		t.Fatalf("result %+v, want sigterm after refused SHUTDOWN", r)
	}
	if log := readLog(t, n); !strings.Contains(log, "Received SIGTERM") || !strings.Contains(log, "bye bye") {
		t.Fatalf("log lacks SIGTERM shutdown:\n%s", log)
	}
	assertPortFree(t, n)
}

// assertNothingRunning checks that no node runs and no port is held.
func assertNothingRunning(t *testing.T, ctx context.Context, nodes []Node, o Options) {
	t.Helper()
	for i, st := range Inspect(ctx, nodes, o) {
		if st.Running || st.Responding {
			t.Fatalf("node %d left running: %+v", nodes[i].Port, st)
		}
		assertPortFree(t, nodes[i])
	}
	out, _ := exec.Command("pgrep", "-a", "redis-server").Output()
	for _, n := range nodes {
		if strings.Contains(string(out), ":"+strconv.Itoa(n.Port)+" ") || strings.Contains(string(out), n.ConfFile) {
			t.Fatalf("redis-server for port %d still in process list:\n%s", n.Port, out)
		}
	}
}

func TestStartBadConfigStopsEverything(t *testing.T) {
	redistest.Integration(t)
	nodes := testNodes(t, 3)
	writeConf(t, nodes[2], "no-such-directive yes")
	ctx, o := testCtx(t, 60*time.Second), testOpts()

	err := Start(ctx, nodes, o)
	if err == nil {
		t.Fatal("Start with a bad config succeeded")
	}
	t.Logf("error: %v", err)
	msg := err.Error()
	for _, want := range []string{fmt.Sprintf("start node %d", nodes[2].Port), "Bad directive", "no-such-directive"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("error lacks %q: %v", want, err)
		}
	}
	assertNothingRunning(t, ctx, nodes, o)
}

func TestStartDaemonDiesEarly(t *testing.T) {
	redistest.Integration(t)
	nodes := testNodes(t, 2)
	// A broken AOF manifest passes the config check, then kills the daemon.
	bad := nodes[1]
	aofDir := filepath.Join(filepath.Dir(bad.ConfFile), "appendonlydir")
	if err := os.MkdirAll(aofDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(aofDir, "appendonly.aof.manifest"), []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, o := testCtx(t, 60*time.Second), testOpts()
	t0 := time.Now()
	err := Start(ctx, nodes, o)
	d := time.Since(t0)
	if err == nil {
		t.Fatal("Start succeeded with a broken AOF")
	}
	t.Logf("failed after %s: %v", d.Round(time.Millisecond), err)
	msg := err.Error()
	if !strings.Contains(msg, fmt.Sprintf("start node %d", bad.Port)) || !strings.Contains(msg, "exited during startup") ||
		!strings.Contains(msg, "last lines of "+bad.LogFile) {
		t.Fatalf("error does not explain: %v", err)
	}
	if d >= o.Ready {
		t.Fatalf("early death detected only after %s", d)
	}
	assertNothingRunning(t, ctx, nodes, o)
	// The healthy node was spawned by this Start, so Start must have stopped it.
	if log := readLog(t, nodes[0]); !strings.Contains(log, "ready to exit, bye bye") {
		t.Fatalf("healthy node %d was not stopped by the rollback:\n%s", nodes[0].Port, log)
	}
}

func TestStartRefusesTakenPort(t *testing.T) {
	redistest.Integration(t)
	nodes := testNodes(t, 3)
	ctx, o := testCtx(t, 60*time.Second), testOpts()

	for _, tc := range []struct {
		name string
		port int
		want string
	}{
		{"client port", nodes[1].Port, fmt.Sprintf("port %d is already in use by pid %d", nodes[1].Port, os.Getpid())},
		{"bus port", nodes[2].Port + busOffset, fmt.Sprintf("cluster bus port %d (port %d + 10000) is already in use", nodes[2].Port+busOffset, nodes[2].Port)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(tc.port))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			err = Start(ctx, nodes, o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start error %v, want %q", err, tc.want)
			}
			t.Logf("error: %v", err)
			for _, n := range nodes {
				if _, err := os.Stat(n.LogFile); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("node %d was spawned (log exists)", n.Port)
				}
			}
		})
	}
}

func TestStartStopThirtyNodes(t *testing.T) {
	redistest.Integration(t)
	nodes := testNodes(t, 30)
	ctx, o := testCtx(t, 120*time.Second), testOpts()
	t0 := time.Now()
	mustStart(t, ctx, nodes, o)
	t.Logf("Start of 30 nodes: %s", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	states := Inspect(ctx, nodes, o)
	t.Logf("Inspect of 30 nodes: %s", time.Since(t0).Round(time.Millisecond))
	for i, st := range states {
		if !st.Running || !st.Responding {
			t.Fatalf("node %d: %+v", nodes[i].Port, st)
		}
	}
	t0 = time.Now()
	res, err := Stop(ctx, nodes, o)
	t.Logf("Stop of 30 nodes: %s", time.Since(t0).Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Action != "shutdown" {
			t.Fatalf("node %d: %+v", nodes[i].Port, r)
		}
		assertPortFree(t, nodes[i])
	}
}

func TestStartHonoursCancellation(t *testing.T) {
	redistest.Integration(t)
	nodes := testNodes(t, 3)
	o := testOpts()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Start(ctx, nodes, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with cancelled ctx: %v", err)
	}
	assertNothingRunning(t, context.Background(), nodes, Options{Conn: redisconn.Options{Timeout: time.Second}})
}
