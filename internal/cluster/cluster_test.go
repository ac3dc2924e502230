package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/events"
	"github.com/rcluster/rcluster/internal/health"
	"github.com/rcluster/rcluster/internal/migrate"
	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/procmgr"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/reshard"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/statedir"
	"github.com/rcluster/rcluster/internal/topology"
)

// fakeRedis writes a script that answers --version like redis-server does.
func fakeRedis(t *testing.T, version string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "redis-server")
	writeFile(t, p, fmt.Sprintf("#!/bin/sh\necho 'Redis server v=%s sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1'\n", version))
	if err := os.Chmod(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConflictError(t *testing.T) {
	saved := statedir.State{Name: "t", Runtime: "process", Host: "127.0.0.1", Ports: []int{7001, 7002, 7003}, Replicas: 0, Formed: true}
	if d := diffState(saved, saved); len(d) != 0 {
		t.Fatalf("same state differs: %v", d)
	}
	want := statedir.State{Name: "t", Runtime: "process", Host: "127.0.0.2", Ports: []int{7001, 7002, 7003, 7004, 7005, 7006}, Replicas: 1}
	err := &ConflictError{Dir: "/x", Diffs: diffState(saved, want)}
	for _, s := range []string{"host was 127.0.0.1, now 127.0.0.2", "ports were [7001 7002 7003], now [7001 7002 7003 7004 7005 7006]",
		"replicas was 0, now 1", "rcluster down --purge", "/x"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("ConflictError lacks %q: %v", s, err)
		}
	}
}

func TestUpRefusesConflictingSpecBeforeStarting(t *testing.T) {
	s := testSpec(t, 7001, 7002, 7003)
	c := &Cluster{Spec: s, Log: &bytes.Buffer{}}
	// Another host: a change up cannot make on a running cluster (ports
	// and replicas alone it reshapes in place).
	writeFile(t, statedir.Path(s.Dir), `{"name":"t","host":"127.0.0.2","ports":[7001,7002,7003],"replicas":1}`)
	err := c.Up(context.Background(), UpOptions{Timeout: 10 * time.Second})
	var ce *ConflictError
	if !errors.As(err, &ce) || len(ce.Diffs) != 2 {
		t.Fatalf("Up = %v, want a ConflictError with 2 differences", err)
	}
	if _, err := os.Stat(s.ConfDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused up wrote configs: %v", err)
	}
}

// TestUpPreflightReportsEveryProblem: a too-old binary and two busy ports
// are reported at once, and nothing is written or started.
func TestUpPreflightReportsEveryProblem(t *testing.T) {
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	busy := l1.Addr().(*net.TCPAddr).Port
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	busyBus := l2.Addr().(*net.TCPAddr).Port
	s := testSpec(t, busy, busyBus-10000, freePort(t))
	s.RedisServer = fakeRedis(t, "6.0.9")
	// The busy ports accept connections and never answer: keep probes short.
	c := &Cluster{Spec: s, Conn: redisconn.Options{Timeout: 200 * time.Millisecond}}
	err = c.Up(context.Background(), UpOptions{Timeout: 10 * time.Second})
	var pe *PreflightError
	if !errors.As(err, &pe) {
		t.Fatalf("Up = %v, want a PreflightError", err)
	}
	for _, want := range []string{
		"nothing was started",
		"is Redis 6.0.9; rcluster needs Redis >= 7.0",
		fmt.Sprintf("port %d is already in use by pid %d", busy, os.Getpid()),
		fmt.Sprintf("cluster bus port %d (port %d + 10000) is already in use by pid %d", busyBus, busyBus-10000, os.Getpid()),
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("preflight error lacks %q:\n%v", want, err)
		}
	}
	if _, err := os.Stat(s.ConfDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed preflight wrote configs: %v", err)
	}
}

func TestUpUnusableStateDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	writeFile(t, file, "x")
	s := testSpec(t, 7001, 7002, 7003)
	s.Dir = filepath.Join(file, "state")
	s.RedisServer = "/nonexistent/redis-server"
	err := (&Cluster{Spec: s}).Up(context.Background(), UpOptions{Timeout: 10 * time.Second})
	var pe *PreflightError
	if !errors.As(err, &pe) {
		t.Fatalf("Up = %v, want a PreflightError", err)
	}
	for _, want := range []string{"state dir " + s.Dir, "not a directory", `"/nonexistent/redis-server" not found`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestLockSecondWaiterFailsClearly(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	unlock, err := lock(ctx, dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = lock(ctx, dir, 150*time.Millisecond)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("held by pid %d", os.Getpid())) {
		t.Fatalf("second lock = %v, want ErrLocked naming our pid", err)
	}
	if el := time.Since(start); el < 150*time.Millisecond || el > 2*time.Second {
		t.Errorf("second lock gave up after %s, want about 150ms", el)
	}
	// A waiter gets the lock as soon as it is released.
	done := make(chan error, 1)
	go func() {
		u, err := lock(ctx, dir, 5*time.Second)
		if err == nil {
			u()
		}
		done <- err
	}()
	unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waiter: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter did not get the released lock")
	}
}

func TestDownWithoutStateDir(t *testing.T) {
	s := testSpec(t, 7001, 7002, 7003)
	s.Dir = filepath.Join(s.Dir, "never-created")
	if err := (&Cluster{Spec: s}).Down(context.Background(), DownOptions{Purge: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("down created %s", s.Dir)
	}
}

func TestPurgeRefusesForeignDir(t *testing.T) {
	s := testSpec(t, 7001)
	writeFile(t, filepath.Join(s.Dir, "precious.txt"), "x")
	if err := (&Cluster{Spec: s, Log: io.Discard}).Down(context.Background(), DownOptions{Purge: true}); err != nil {
		t.Fatalf("down --purge of a dir that is no state dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, "precious.txt")); err != nil {
		t.Fatal("purge deleted a foreign dir")
	}
}

func TestStatusTable(t *testing.T) {
	var b bytes.Buffer
	err := WriteStatusTable(&b, []NodeStatus{
		{Addr: "127.0.0.1:7001", Pid: 10, Running: true, Role: "master", Slots: "0-5460", State: "ok", Keys: 3, Memory: "1.2M", Flags: "myself,master"},
		{Addr: "127.0.0.1:7002", Running: false, Role: "master", Slots: "5461-10922", Flags: "master,fail,disconnected", Detail: "stale pidfile: pid 99 is not running"},
		{Addr: "127.0.0.1:7003", Pid: 12, Running: true, Role: "replica", Master: "127.0.0.1:7001", State: "ok", Link: "up", Flags: "myself,slave"},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "FLAGS") {
		t.Fatalf("table:\n%s", b.String())
	}
	for i, want := range [][]string{
		{"127.0.0.1:7001", "10", "master", "0-5460", "ok", "3", "1.2M"},
		{"127.0.0.1:7002", "stopped", "fail,disconnected", "stale pidfile"},
		{"127.0.0.1:7003", "replica", "127.0.0.1:7001", "up"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("row %d lacks %q: %s", i+1, w, lines[i+1])
			}
		}
	}
	if strings.Contains(b.String(), "myself") {
		t.Errorf("table repeats the myself flag:\n%s", b.String())
	}
}

// freePort returns a port nothing listens on.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// A first up that fails before writing anything (here: no binary) must not
// leave a state dir holding only the lock file: `down` then reported
// "3 were not running; data kept in DIR" for a cluster that never existed.
func TestUpFailedFirstRunLeavesNoStateDir(t *testing.T) {
	s := testSpec(t, freePort(t), freePort(t), freePort(t))
	s.Dir = filepath.Join(t.TempDir(), "state")
	s.RedisServer = "/nonexistent/redis-server"
	err := (&Cluster{Spec: s, Log: &bytes.Buffer{}}).Up(context.Background(), UpOptions{Timeout: 10 * time.Second})
	var pe *PreflightError
	if !errors.As(err, &pe) {
		t.Fatalf("Up = %v, want a PreflightError", err)
	}
	if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed first up left %s behind (stat: %v)", s.Dir, err)
	}
	// A state dir that existed before is never removed.
	s.Dir = t.TempDir()
	_ = (&Cluster{Spec: s, Log: &bytes.Buffer{}}).Up(context.Background(), UpOptions{Timeout: 10 * time.Second})
	if _, err := os.Stat(s.Dir); err != nil {
		t.Fatalf("failed up removed a pre-existing state dir: %v", err)
	}
}

// A waiter whose lock file was removed by the holder (removeBareStateDir)
// must not believe it holds the lock: it retakes it on a fresh file, so a
// third command still sees the dir as locked.
func TestLockSurvivesRemovedLockFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	ctx := context.Background()
	unlock, err := lock(ctx, dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 1)
	errc := make(chan error, 1)
	go func() {
		u, err := lock(ctx, dir, 5*time.Second)
		if err != nil {
			errc <- err
			return
		}
		got <- u
	}()
	// Let the waiter open the old file before it goes away.
	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	lockPath := filepath.Join(dir, "rcluster.lock")
	var b poll.Backoff
	for openCount(lockPath) < 2 {
		if err := b.Wait(waitCtx); err != nil {
			t.Fatal("the waiter never opened the lock file")
		}
	}
	removeBareStateDir(dir)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("removeBareStateDir kept %s: %v", dir, err)
	}
	unlock()
	var u2 func()
	select {
	case u2 = <-got:
	case err := <-errc:
		t.Fatalf("waiter: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("waiter did not get the lock")
	}
	defer u2()
	if _, err := lock(ctx, dir, 100*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Fatalf("third lock = %v, want ErrLocked (the waiter must hold the live lock file)", err)
	}
}

// openCount is how many of this process's descriptors are open on path.
func openCount(path string) int {
	fds, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && l == path {
			n++
		}
	}
	return n
}

func TestMastersFirst(t *testing.T) {
	s := &spec.Spec{Host: "127.0.0.1", Ports: spec.Ports{7001, 7002, 7003, 7004, 7005, 7006}, Replicas: 1}
	node := func(p int) procmgr.Node { return procmgr.Node{Host: "127.0.0.1", Port: p} }
	ports := func(waves [][]procmgr.Node) [][]int {
		var out [][]int
		for _, w := range waves {
			var ps []int
			for _, n := range w {
				ps = append(ps, n.Port)
			}
			out = append(out, ps)
		}
		return out
	}
	for _, tc := range []struct {
		nodes []int
		want  [][]int
	}{
		{[]int{7001, 7002, 7003, 7004, 7005, 7006}, [][]int{{7001, 7002, 7003}, {7004, 7005, 7006}}},
		{[]int{7006, 7002, 7004}, [][]int{{7002}, {7006, 7004}}},
		{[]int{7005}, [][]int{{7005}}},
		{[]int{7003, 7001}, [][]int{{7003, 7001}}},
		{nil, nil},
	} {
		var nodes []procmgr.Node
		for _, p := range tc.nodes {
			nodes = append(nodes, node(p))
		}
		if got := ports(mastersFirst(s, nodes)); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("mastersFirst(%v) = %v, want %v", tc.nodes, got, tc.want)
		}
	}
}

// capturedStatuses is a healthy 6-node cluster as status reads it: the
// answers captured from redis-server 7.0.15 (internal/topology/testdata;
// 12001-12003 masters, 12004-12006 their replicas), each node's view the
// master's with the myself flag moved to it.
func capturedStatuses(t *testing.T) []NodeStatus {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("..", "topology", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	view, err := topology.ParseNodes(read("cluster-nodes-6-master-view.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var out []NodeStatus
	for _, me := range view {
		nodes := make([]topology.Node, len(view))
		for i, n := range view {
			n.Flags = slices.DeleteFunc(slices.Clone(n.Flags), func(f string) bool { return f == "myself" })
			if n.ID == me.ID {
				n.Flags = append([]string{"myself"}, n.Flags...)
			}
			nodes[i] = n
		}
		repl := map[string]string{"role": "master"}
		role := "master"
		if me.IsReplica() {
			repl = topology.ParseInfo(read("info-replication-replica.txt"))
			m, _ := topology.FindNode(view, me.MasterID)
			repl["master_port"] = strings.TrimPrefix(m.Addr, "127.0.0.1:")
			role = "replica"
		}
		out = append(out, NodeStatus{Addr: me.Addr, Running: true, Role: role, State: "ok", Link: repl["master_link_status"],
			answer: &health.Answer{Addr: me.Addr, Nodes: nodes, Info: topology.ParseInfo(read("cluster-info-ok.txt")), Repl: repl}})
	}
	slices.SortFunc(out, func(a, b NodeStatus) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}

// TestProblems: status judges what the nodes answered by health.Judge (the
// definition up and verify use) after what only the runtime knows, one
// entry per node at fault, naming it and why.
func TestProblems(t *testing.T) {
	if p := Problems(capturedStatuses(t)); len(p) != 0 {
		t.Errorf("Problems(healthy) = %q", p)
	}
	sick := capturedStatuses(t)
	sick[0].Running = false // 12001: stopped
	sick[1].Detail, sick[1].answer = "i/o timeout", &health.Answer{Addr: sick[1].Addr, Err: errors.New("i/o timeout")}
	sick[2].answer.Info = map[string]string{"cluster_state": "fail", "cluster_known_nodes": "6"}
	sick[3].answer.Repl = map[string]string{"role": "slave", "master_link_status": "down"}
	sick[4].Paused = true
	got := Problems(sick)
	want := []string{"127.0.0.1:12001 not running", "127.0.0.1:12002 not answering (i/o timeout)", "127.0.0.1:12003 cluster_state:fail",
		"127.0.0.1:12004 master_link_status:down", "127.0.0.1:12005 paused"}
	if len(got) != len(want) {
		t.Fatalf("Problems = %q\nwant one entry each for %q", got, want)
	}
	for i, w := range want {
		addr, why, _ := strings.Cut(w, " ")
		if !strings.HasPrefix(got[i], addr+" ") || !strings.Contains(got[i], why) {
			t.Errorf("Problems[%d] = %q, want %s named with %q", i, got[i], addr, why)
		}
	}
}

// The state dir's layout must name the events log under the name the
// events package writes, or purge would leave it (and the dir) behind.
func TestEventsFileInLayout(t *testing.T) {
	if statedir.EventsFile != events.FileName {
		t.Fatalf("statedir.EventsFile %q != events.FileName %q", statedir.EventsFile, events.FileName)
	}
}

func TestCollapseMovesEachSlotOnce(t *testing.T) {
	got := collapse([]reshard.Move{{Slot: 1, From: "a", To: "b"}, {Slot: 2, From: "a", To: "b"}, {Slot: 1, From: "b", To: "c"}, {Slot: 3, From: "c", To: "a"}, {Slot: 3, From: "a", To: "c"}})
	want := []reshard.Move{{Slot: 1, From: "a", To: "c"}, {Slot: 2, From: "a", To: "b"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("collapse = %v, want %v", got, want)
	}
}

// TestPlanScalePromotesReplicas: replicas 1 -> 0 on the same six ports
// plans the three replicas as masters to be reset and joined again (it
// used to be refused), and the dry-run plan says so.
func TestPlanScalePromotesReplicas(t *testing.T) {
	s := testSpec(t, 7001, 7002, 7003, 7004, 7005, 7006)
	c := &Cluster{Spec: s}
	saved := &statedir.State{Name: s.Name, Runtime: s.RuntimeName(), Host: s.Host, Ports: slices.Clone(s.Ports), Replicas: 1, Formed: true}
	p, err := c.planScale(saved)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1:7004", "127.0.0.1:7005", "127.0.0.1:7006"}
	if !slices.Equal(p.Promote, want) {
		t.Errorf("Promote = %v, want %v", p.Promote, want)
	}
	if len(p.Masters) != 6 || len(p.Replicas) != 0 || len(p.Add) != 0 || len(p.Remove) != 0 {
		t.Errorf("plan = %+v, want 6 masters and nothing added, removed or replicating", p)
	}
	var out bytes.Buffer
	p.Write(&out)
	if !strings.Contains(out.String(), "replicas made empty masters (forgotten, reset, joined again; their masters keep the keys): "+strings.Join(want, " ")) {
		t.Errorf("plan output lacks the promotion:\n%s", out.String())
	}
	// The other way (0 -> 1) promotes nobody.
	s.Replicas, saved.Replicas = 1, 0
	if p, err = c.planScale(saved); err != nil || len(p.Promote) != 0 {
		t.Errorf("replicas 0 -> 1: Promote = %v, err %v; want none", p.Promote, err)
	}
}

// TestKeepLastSlot: a master that gives all its slots and also receives
// keeps one back for the second phase; one that only gives, or keeps some,
// goes in the first.
func TestKeepLastSlot(t *testing.T) {
	view := []topology.Node{
		{ID: "x", Flags: []string{"master"}, Slots: []topology.SlotRange{{Start: 0, End: 2}}},
		{ID: "y", Flags: []string{"master"}, Slots: []topology.SlotRange{{Start: 3, End: 5}}},
		{ID: "z", Flags: []string{"master"}, Slots: []topology.SlotRange{{Start: 6, End: 9}}},
	}
	moves := []migrate.Move{
		{Slot: 0, From: "x", To: "y"}, {Slot: 1, From: "x", To: "y"}, {Slot: 2, From: "x", To: "y"}, // x gives all, receives 3
		{Slot: 3, From: "y", To: "x"}, // y keeps 4-5
		{Slot: 6, From: "z", To: "y"}, // z only gives
	}
	ph := keepLastSlot(view, moves)
	if len(ph[1]) != 1 || ph[1][0].From != "x" || len(ph[0]) != 4 {
		t.Fatalf("phases = %v, want x's first move held back alone", ph)
	}
	for _, m := range ph[0] {
		if m == ph[1][0] {
			t.Errorf("move %v in both phases", m)
		}
	}
}
