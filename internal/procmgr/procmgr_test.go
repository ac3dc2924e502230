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
)

func TestAddr(t *testing.T) {
	for _, tc := range []struct {
		n    Node
		want string
	}{
		{Node{Port: 7001}, "127.0.0.1:7001"},
		{Node{Host: "10.0.0.5", Port: 7002}, "10.0.0.5:7002"},
		{Node{Host: "::1", Port: 7003}, "[::1]:7003"},
	} {
		if got := tc.n.Addr(); got != tc.want {
			t.Errorf("%+v.Addr() = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// startSleep starts `sleep 60` and returns once it runs sleep (after the
// exec); the cleanup kills and reaps it.
func startSleep(t *testing.T, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		// A fresh Process each time: gopsutil caches the name it read.
		if name, _ := (&process.Process{Pid: int32(cmd.Process.Pid)}).Name(); name == "sleep" {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatal("sleep never started")
		}
	}
}

// TestProcessFacts: a live process, a stopped one and a zombie are told
// apart, and a zombie or reaped pid is not running.
func TestProcessFacts(t *testing.T) {
	ctx := testCtx(t, 10*time.Second)
	self, err := openProof(ctx, os.Getpid())
	if err != nil || self.created <= 0 || self.gone(ctx) || self.stopped(ctx) {
		t.Fatalf("own process: %+v, %v", self, err)
	}
	self.release()

	cmd := startSleep(t, "exec sleep 60")
	pid := cmd.Process.Pid
	p, err := openProof(ctx, pid)
	if err != nil {
		t.Fatal(err)
	}
	defer p.release()
	if err := p.signal(ctx, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for b := newBackoff(); !p.stopped(ctx); {
		if b.Wait(ctx) != nil {
			t.Fatal("SIGSTOPped sleep never shown stopped")
		}
	}
	if !pidAlive(ctx, pid) || p.gone(ctx) {
		t.Fatal("a stopped process counted as gone")
	}
	if err := p.signal(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := waitGone(ctx, p); err != nil {
		t.Fatalf("killed sleep not gone: %v", err)
	}
	// Not reaped yet: a zombie, which counts as not running.
	if f, err := readFacts(ctx, p.proc, pid); err != nil || f.status != process.Zombie {
		t.Fatalf("facts of the unreaped sleep: %+v, %v; want a zombie", f, err)
	}
	if _, err := openProof(ctx, pid); !errors.Is(err, errExited) || pidAlive(ctx, pid) {
		t.Fatalf("openProof of a zombie: %v, want errExited", err)
	}
	_ = cmd.Wait()
	if _, err := openProof(ctx, pid); !errors.Is(err, errExited) || pidAlive(ctx, pid) {
		t.Fatalf("openProof of a reaped pid: %v, want errExited", err)
	}
}

// TestDisproof: where the OS hides a process's executable and command
// line, its uid and start time can still show it never wrote the pidfile.
func TestDisproof(t *testing.T) {
	ctx := testCtx(t, 10*time.Second)
	self, err := openProof(ctx, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer self.release()
	gp := &process.Process{Pid: int32(os.Getpid())}
	pidfile := filepath.Join(t.TempDir(), "redis.pid")
	if err := os.WriteFile(pidfile, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	if why := disproof(ctx, gp, self.created, pidfile); why != "" {
		t.Fatalf("a pidfile written by this process after it started is disproved: %s", why)
	}
	if why := disproof(ctx, gp, self.created, pidfile+".missing"); why != "" {
		t.Fatalf("a missing pidfile disproves: %s", why)
	}
	old := time.UnixMilli(self.created).Add(-time.Hour)
	if err := os.Chtimes(pidfile, old, old); err != nil {
		t.Fatal(err)
	}
	if why := disproof(ctx, gp, self.created, pidfile); !strings.Contains(why, "after "+pidfile+" was written") {
		t.Fatalf("pidfile older than the process: disproof = %q", why)
	}
	if os.Geteuid() == 0 {
		now := time.Now()
		if err := os.Chtimes(pidfile, now, now); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(pidfile, 54321, 54321); err != nil {
			t.Fatal(err)
		}
		if why := disproof(ctx, gp, self.created, pidfile); !strings.Contains(why, "is owned by uid 54321") {
			t.Fatalf("pidfile of another user: disproof = %q", why)
		}
	}
}

func TestCmdlineNamesNode(t *testing.T) {
	n := Node{Port: 7001, ConfFile: "/x/conf/redis_7001.conf"}
	for cmd, want := range map[string]bool{
		"redis-server 127.0.0.1:7001 [cluster]\x00":   true,
		"redis-server *:7001\x00":                     true,
		"redis-server [::1]:7001 [cluster]":           true,
		"redis-server\x00/x/conf/redis_7001.conf\x00": true,
		"redis-server 127.0.0.1:17001 [cluster]":      false,
		"redis-server 127.0.0.1:70011 [cluster]":      false,
		"redis-server 127.0.0.1:7002 [cluster]":       false,
		"redis-server\x00/x/conf/redis_7001.conf.bak": false,
		"sleep\x0060\x00":                             false,
		":7001":                                       false,
	} {
		if got := cmdlineNamesNode(cmd, n); got != want {
			t.Errorf("cmdlineNamesNode(%q) = %v, want %v", cmd, got, want)
		}
	}
}

func TestExeIsRedis(t *testing.T) {
	if !exeIsRedis("/usr/local/bin/redis-server", "redis-server") {
		t.Error("redis-server basename not accepted")
	}
	if !exeIsRedis("/opt/redis/bin/redis-server (deleted)", "redis-server") {
		t.Error("upgraded (deleted) binary not accepted")
	}
	if !exeIsRedis("/usr/bin/valkey-server", "redis-server") {
		t.Error("valkey-server not accepted")
	}
	if exeIsRedis("/usr/bin/sleep", "redis-server") {
		t.Error("sleep accepted as redis")
	}
	// Binary given as a symlink: the resolved target is accepted.
	dir := t.TempDir()
	target := filepath.Join(dir, "redis-check-rdb")
	if err := os.WriteFile(target, []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "my-redis")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if !exeIsRedis(target, link) {
		t.Error("resolved Binary symlink not accepted")
	}
	if exeIsRedis("/usr/bin/redis-check-aof", link) {
		t.Error("unrelated redis tool accepted")
	}
}

func TestPortHolderNamesUs(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	err = checkPorts(Node{Port: port}, &sockets{})
	want := fmt.Sprintf("port %d is already in use by pid %d", port, os.Getpid())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("checkPorts = %v, want %q", err, want)
	}
}

func TestDaemonPidFromLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "redis.log")
	old := "100:M 23 Nov 2026 22:06:19.635 # Redis is now ready to exit, bye bye...\n"
	fresh := "8228:C 23 Nov 2026 22:06:19.305 # launcher line\n" +
		"8229:C 23 Nov 2026 22:06:19.305 # oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo\n"
	if err := os.WriteFile(path, []byte(old+fresh), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := daemonPidFromLog(path, int64(len(old)), 8228); got != 8229 {
		t.Fatalf("daemonPidFromLog = %d, want 8229 (skip old lines and the launcher)", got)
	}
	if got := daemonPidFromLog(path, int64(len(old+fresh)), 8228); got != 0 {
		t.Fatalf("no new lines: got %d", got)
	}
	if got := daemonPidFromLog(filepath.Join(t.TempDir(), "missing"), 0, 0); got != 0 {
		t.Fatalf("missing log: got %d", got)
	}
}

func TestLogTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "redis.log")
	var b strings.Builder
	for i := range 500 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	got := logTail(path)
	if !strings.Contains(got, "line 499") || !strings.Contains(got, "line 488") || strings.Contains(got, "line 487\n") {
		t.Fatalf("logTail = %q", got)
	}
	if got := logTail(filepath.Join(t.TempDir(), "nope")); !strings.Contains(got, "no such file") {
		t.Fatalf("logTail(missing) = %q", got)
	}
}

func TestParseInfo(t *testing.T) {
	m := parseInfo("# Server\r\nredis_version:7.0.15\r\nprocess_id:8229\r\ntcp_port:7001\r\n")
	if m["process_id"] != "8229" || m["tcp_port"] != "7001" || m["redis_version"] != "7.0.15" {
		t.Fatalf("parseInfo = %v", m)
	}
}

func TestReadPidfile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.pid")
	os.WriteFile(p, []byte("1234\n"), 0o600)
	if pid, err := readPidfile(p); err != nil || pid != 1234 {
		t.Fatalf("readPidfile = %d, %v", pid, err)
	}
	os.WriteFile(p, []byte("nope"), 0o600)
	if _, err := readPidfile(p); err == nil {
		t.Fatal("garbage pidfile accepted")
	}
	os.WriteFile(p, []byte("-5"), 0o600)
	if _, err := readPidfile(p); err == nil {
		t.Fatal("negative pid accepted")
	}
}

// freePort returns a port nothing listens on (no Redis needed).
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestIdentifyWithoutRedis(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir := t.TempDir()
	n := Node{Port: freePort(t), PidFile: filepath.Join(dir, "redis.pid"), ConfFile: filepath.Join(dir, "redis.conf")}
	o := Options{}

	if st := Identify(ctx, n, o); st.Running || st.Pid != 0 || st.Detail != "no pidfile" {
		t.Fatalf("no pidfile: %+v", st)
	}
	// The pidfile names this test process: alive, but not redis-server.
	os.WriteFile(n.PidFile, []byte(strconv.Itoa(os.Getpid())), 0o600)
	want := fmt.Sprintf("stale pidfile: pid %d is not redis-server on port %d", os.Getpid(), n.Port)
	if st := Identify(ctx, n, o); st.Running || st.Responding || st.Pid != 0 || st.Detail != want {
		t.Fatalf("foreign pid: %+v, want %q", st, want)
	}
	res, err := Stop(ctx, []Node{n}, o)
	if err != nil || res[0].Action != "not running" {
		t.Fatalf("Stop of foreign pid: %+v, %v", res, err)
	}
	if _, err := os.Stat(n.PidFile); err != nil {
		t.Fatalf("pidfile of a live foreign pid removed: %v", err)
	}
}

// A real process that ignores SIGTERM gets SIGKILL, and its zombie (we are
// its parent and reap it only in cleanup) counts as gone.
func TestTerminateEscalatesToSIGKILL(t *testing.T) {
	defer func(d time.Duration) { termWait = d }(termWait)
	termWait = 200 * time.Millisecond
	ctx := testCtx(t, 10*time.Second)
	cmd := startSleep(t, `trap "" TERM; exec sleep 60`) // SIGTERM ignored from the exec on
	pid := cmd.Process.Pid
	p, err := openProof(ctx, pid)
	if err != nil {
		t.Fatal(err)
	}
	defer p.release()
	n := Node{Port: freePort(t)}
	r := terminate(ctx, n, Options{}.withDefaults(), p, false)
	if r.Err != nil || r.Action != "sigkill" || !strings.Contains(r.Detail, "after SIGTERM") {
		t.Fatalf("terminate = %+v", r)
	}
	if f, err := readFacts(ctx, p.proc, pid); err != nil || f.status != process.Zombie {
		t.Fatalf("process state after SIGKILL: %+v %v, want zombie (not yet reaped)", f, err)
	}
}

func TestCheckPortsNamesEveryBusyPort(t *testing.T) {
	listen := func() (net.Listener, int) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l, l.Addr().(*net.TCPAddr).Port
	}
	_, client := listen()
	_, bus := listen()
	free := freePort(t)
	err := CheckPorts([]Node{{Port: client}, {Port: bus - busOffset}})
	if err == nil {
		t.Fatal("CheckPorts with two busy ports succeeded")
	}
	for _, want := range []string{
		fmt.Sprintf("node %d: port %d is already in use by pid %d", client, client, os.Getpid()),
		fmt.Sprintf("node %d: cluster bus port %d (port %d + 10000) is already in use", bus-busOffset, bus, bus-busOffset),
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CheckPorts error lacks %q:\n%v", want, err)
		}
	}
	if err := CheckPorts([]Node{{Port: free}}); err != nil && free+busOffset <= 65535 {
		t.Errorf("CheckPorts on a free port: %v", err)
	}
}

// A holder started as `python3 -c "<multi-line script>"` must not spread
// the busy-port error over several lines.
func TestCmdlineSummaryOneLine(t *testing.T) {
	args := []string{"python3", "-c", "\nimport socket\n  s=socket.socket()"}
	if got, want := cmdlineSummary(args), "python3 -c import socket s=socket.socket()"; got != want {
		t.Fatalf("cmdlineSummary = %q, want %q", got, want)
	}
	long := cmdlineSummary([]string{strings.Repeat("é", 100)})
	if !strings.HasSuffix(long, "...") || len([]rune(long)) != 83 {
		t.Fatalf("cmdlineSummary(long) = %q (%d runes), want 80 runes + ...", long, len([]rune(long)))
	}
}

// A port nobody listens on but a closed client connection still holds
// (TIME-WAIT, no SO_REUSEADDR) cannot be bound by redis-server either; the
// preflight error must say why instead of a bare "already in use".
func TestCheckPortsExplainsTimeWait(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().(*net.TCPAddr).Port
	c.Close() // the client closes first: its side goes to TIME-WAIT
	if s := <-accepted; s != nil {
		buf := make([]byte, 1)
		_ = s.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = s.Read(buf) // EOF once the FIN arrived
		s.Close()
	}
	err = checkPorts(Node{Host: "127.0.0.1", Port: local}, &sockets{}) // local itself is checked first
	t.Logf("checkPorts: %v", err)
	if err == nil {
		t.Skipf("kernel let port %d be bound over TIME-WAIT", local)
	}
	if !strings.Contains(err.Error(), "TIME-WAIT") {
		t.Fatalf("checkPorts over a TIME-WAIT port %d = %v, want it to name TIME-WAIT", local, err)
	}
}

// TestWaitPortClosed: a closed port is reported closed at once; one that
// accepts, and one whose full accept queue makes dials time out while a
// socket still listens, are reported with what the last dial saw.
func TestWaitPortClosed(t *testing.T) {
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	n := Node{Host: "127.0.0.1", Port: port}
	if unbound(n) {
		t.Errorf("unbound(%d) = true while a listener is open", port)
	}
	if why := waitPortClosed(ctx, n, 100*time.Millisecond); why != "still accepts connections" {
		t.Errorf("open port: waitPortClosed = %q", why)
	}
	l.Close()
	if why := waitPortClosed(ctx, n, time.Second); why != "" {
		t.Errorf("closed port: waitPortClosed = %q, want \"\"", why)
	}
	if !unbound(n) {
		t.Errorf("unbound(%d) = false after close", port)
	}

	// A listener nobody accepts on, with the smallest backlog: once its
	// queue is full the kernel drops further SYNs and dials time out.
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	n = Node{Host: "127.0.0.1", Port: sa.(*syscall.SockaddrInet4).Port}
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 8 { // fill the queue; later dials time out
		c, err := net.DialTimeout("tcp", n.Addr(), 100*time.Millisecond)
		if err != nil {
			break
		}
		held = append(held, c)
	}
	why := waitPortClosed(ctx, n, 300*time.Millisecond)
	if !strings.HasPrefix(why, "connect: ") && why != "still accepts connections" {
		t.Errorf("listener with a full queue: waitPortClosed = %q, want a timed-out connect", why)
	}
	if why == "" {
		t.Error("listener with a full queue reported closed")
	}
}
