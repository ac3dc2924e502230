package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/bench/internal/benchstat"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

func TestParseCases(t *testing.T) {
	got, err := parseCases("3, 6,30,100,9:2")
	if err != nil {
		t.Fatal(err)
	}
	want := []benchCase{{3, 0}, {6, 1}, {30, 1}, {100, 1}, {9, 2}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("case %d: got %v, want %v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"", "x", "2", "5:1", "6:-1", "6:x"} {
		if _, err := parseCases(bad); err == nil {
			t.Errorf("parseCases(%q) accepted", bad)
		}
	}
}

func TestNotUsable(t *testing.T) {
	ci := func(state string, known int) string {
		return "cluster_enabled:1\r\ncluster_state:" + state + "\r\ncluster_slots_assigned:16384\r\ncluster_known_nodes:" + strconv.Itoa(known) + "\r\n"
	}
	master := "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n"
	replica := func(link string) string {
		return "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_link_status:" + link + "\r\n"
	}
	cases := []struct {
		ci, ri string
		want   string
	}{
		{ci("ok", 6), master, ""},
		{ci("ok", 6), replica("up"), ""},
		{ci("fail", 6), master, "cluster_state:fail"},
		{ci("ok", 5), master, "knows 5 of 6 nodes"},
		{ci("ok", 6), replica("down"), "master_link_status:down"},
		{"", master, "cluster_state:"},
	}
	for i, c := range cases {
		if got := notUsable(c.ci, c.ri, 6); got != c.want {
			t.Errorf("%d: got %q, want %q", i, got, c.want)
		}
	}
}

func TestSummarizeAndTable(t *testing.T) {
	c := &CaseResult{Name: "6 nodes, r1", Nodes: 6, Replicas: 1, Samples: []Sample{
		{Hand: &HandSample{TotalMS: 6000}, Rcluster: &RclusterSample{UpMS: 2000, UpMaxRSSKB: 20480, UsableOnReturn: true, DownMS: 100}},
		{Hand: &HandSample{TotalMS: 7000}, Rcluster: &RclusterSample{UpMS: 3000, UpMaxRSSKB: 30720, DownMS: 300}},
		{Hand: &HandSample{Error: "boom"}, Rcluster: &RclusterSample{Error: "up failed"}},
	}}
	c.summarize()
	if c.Hand.MedianMS != 6500 || c.Up.MedianMS != 2500 || c.Down.MedianMS != 200 {
		t.Fatalf("medians: hand %+v up %+v down %+v", c.Hand, c.Up, c.Down)
	}
	if c.Speedup != 2.6 || c.UpMaxRSSKB != 30720 || c.NotUsableOnReturn != 1 || c.HandErrors != 1 || c.RclusterErrors != 1 {
		t.Fatalf("summary: %+v", c)
	}
	var b bytes.Buffer
	skipped := &CaseResult{Name: "3 nodes, r0", Samples: []Sample{{Hand: &HandSample{TotalMS: 2100}}}}
	skipped.summarize()
	c.Samples[0].BusyPct = 60
	c.summarize()
	writeTable(&b, []*CaseResult{c, skipped})
	out := b.String()
	for _, want := range []string{"2.50s (2.00–3.00)", "6.50s (6.00–7.00)", "2.60x", "0.20s", "30.0 MiB",
		"returned before the cluster was usable in 1 runs", "1 hand and 1 rcluster runs failed", "up to 60% busy with other work"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	last := strings.Split(out, "\n")[2]
	if !strings.HasPrefix(last, "3 nodes, r0") || strings.Count(last, "n/a") != 4 {
		t.Errorf("skipped rcluster row should say n/a four times: %q", last)
	}

	// Per extra node, from the smallest case with an up median: 3 nodes at
	// 2.05s, 6 at 2.5s: (2500-2050)/3 = 150 ms.
	three := &CaseResult{Name: "3 nodes, r0", Nodes: 3, Samples: []Sample{{Rcluster: &RclusterSample{UpMS: 2050}}}}
	three.summarize()
	b.Reset()
	writeTable(&b, []*CaseResult{three, c})
	rows := strings.Split(b.String(), "\n")
	if !strings.HasSuffix(strings.TrimSpace(rows[1]), "-") || !strings.HasSuffix(strings.TrimSpace(rows[2]), "150.0 ms") {
		t.Errorf("per extra node column:\n%s", b.String())
	}
}

func TestSpecYAML(t *testing.T) {
	got := specYAML("bench-n6-r1-1", 21000, 6, 1, "/tmp/x/state")
	want := "name: bench-n6-r1-1\nhost: 127.0.0.1\nports: \"21000-21005\"\nreplicas: 1\ndir: /tmp/x/state\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestRclusterUsable(t *testing.T) {
	if why := rclusterUsable(filepath.Join(t.TempDir(), "rcluster")); !strings.Contains(why, "not found") {
		t.Fatalf("missing binary: %q", why)
	}
	if why := rclusterUsable(t.TempDir()); !strings.Contains(why, "not an executable") {
		t.Fatalf("directory: %q", why)
	}
}

// A failing rcluster binary must yield an error sample, not a hang or a
// panic, and leave nothing behind.
func TestRunRclusterFailingBinary(t *testing.T) {
	falseBin, err := exec.LookPath("false")
	if err != nil {
		t.Skip("no false binary")
	}
	cfg := &config{rcluster: falseBin, timeout: 10 * time.Second}
	s, err := runRcluster(context.Background(), cfg, 3, 0, 1)
	if err == nil || s.Error == "" || !strings.Contains(err.Error(), "rcluster up") {
		t.Fatalf("want an up error, got %v / %+v", err, s)
	}
	if s.UpMS != 0 {
		t.Fatalf("failed up recorded a time: %+v", s)
	}
}

// killUnder must find and kill a daemonized redis-server (not our child)
// by its working directory.
func TestKillUnderDaemon(t *testing.T) {
	redistest.Integration(t)
	bin := redistest.RequireBinary(t, "redis-server")
	root := t.TempDir()
	port := redistest.PortBlock(t, 1)
	dir := filepath.Join(root, "db")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--daemonize", "yes",
		"--dir", dir, "--save", "", "--logfile", filepath.Join(dir, "log")).CombinedOutput()
	if err != nil {
		t.Fatalf("start daemon: %v\n%s", err, out)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t.Cleanup(func() { killUnder(root) })
	if err := redistest.WaitPing(ctx, addr); err != nil {
		t.Fatal(err)
	}
	pids := redisUnder(root)
	if len(pids) != 1 {
		t.Fatalf("redisUnder found %v, want one process", pids)
	}
	if k := killUnder(root); k != 1 {
		t.Fatalf("killUnder found %d processes, want 1", k)
	}
	if !isDead(pids[0]) {
		t.Fatalf("redis-server %d still running after killUnder", pids[0])
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		out, _ := exec.Command("ss", "-ltnp", "sport = :"+strconv.Itoa(port)).CombinedOutput()
		t.Fatalf("%s still accepts connections after killing %d:\n%s", addr, pids[0], out)
	}
	if k := len(redisUnder(root)); k != 0 {
		t.Fatalf("%d redis-server processes left under %s", k, root)
	}
}

// The whole harness, hand path only, on the smallest case: it must report a
// plausible time (Redis needs ~2 s before a fresh cluster is ok) and leave
// no process behind.
func TestRunHandPathEndToEnd(t *testing.T) {
	redistest.Integration(t)
	redistest.RequireBinary(t, "redis-server")
	redistest.RequireBinary(t, "redis-cli")
	var stdout, stderr bytes.Buffer
	rc := run([]string{"-skip-rcluster", "-cases", "3", "-runs", "1", "-timeout", "60s", "-wait-idle", "0", "-json", "-"}, &stdout, &stderr)
	if rc != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", rc, stderr.String())
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, stdout.String())
	}
	if len(rep.Cases) != 1 || len(rep.Cases[0].Samples) != 1 {
		t.Fatalf("report: %+v", rep)
	}
	c := rep.Cases[0]
	h := c.Samples[0].Hand
	if h == nil || h.Error != "" || c.Samples[0].Rcluster != nil {
		t.Fatalf("sample: %+v", c.Samples[0])
	}
	if h.TotalMS < 1500 || h.TotalMS > 60000 || h.CreateMS <= 0 || h.SpawnMS <= 0 {
		t.Fatalf("implausible hand timings: %+v", h)
	}
	if c.Hand == nil || c.Hand.MedianMS != h.TotalMS || c.Up != nil {
		t.Fatalf("summary: %+v", c)
	}
	if !strings.Contains(stderr.String(), "3 nodes, r0") || !strings.Contains(stderr.String(), "n/a") {
		t.Fatalf("table on stderr missing:\n%s", stderr.String())
	}
	// Ports of the run, client and bus, must be free again.
	lo, _, _ := strings.Cut(h.Ports, "-")
	base, err := strconv.Atoi(lo)
	if err != nil {
		t.Fatalf("ports %q: %v", h.Ports, err)
	}
	for p := base; p < base+3; p++ {
		for _, q := range []int{p, p + spec.BusPortOffset} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				t.Fatalf("port %d of the run's %s still in use: %v", q, h.Ports, err)
			}
			l.Close()
		}
	}
}

func TestCPUBusyPct(t *testing.T) {
	p := benchstat.BusyPercent(context.Background(), 50*time.Millisecond)
	if p < 0 || p > 100 {
		t.Fatalf("cpuBusyPct = %v, want 0..100", p)
	}
}

// TestTimeWaitSockets closes a loopback connection from the client side
// first, which leaves the client's socket in TIME_WAIT for 60s.
func TestTimeWaitSockets(t *testing.T) {
	if timeWaitSockets() < 0 {
		t.Skip("no /proc/net/sockstat")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c) // until the client's FIN
		c.Close()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	<-done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := poll(ctx, time.Millisecond, 50*time.Millisecond, func() (bool, error) {
		return timeWaitSockets() >= 1, nil
	}); err != nil {
		t.Fatalf("timeWaitSockets() = %d after a client-side close, want >= 1", timeWaitSockets())
	}
}

func TestPhases(t *testing.T) {
	p := filepath.Join(t.TempDir(), "up.log")
	log := " ✓ Preflight checks (12ms)\nusing /usr/bin/redis-server (Redis 7.0.15)\n  master 127.0.0.1:7001 slots 0-5460\n" +
		"form: gossip: every node knows all 100 nodes (4 polls) (1.2s)\n ✗ Forming the cluster (3.1s)\n"
	if err := os.WriteFile(p, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	want := []string{"✓ Preflight checks (12ms)", "form: gossip: every node knows all 100 nodes (4 polls) (1.2s)", "✗ Forming the cluster (3.1s)"}
	if got := phases(p); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("phases = %q, want %q", got, want)
	}
}
