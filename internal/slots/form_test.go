package slots

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
	"github.com/rcluster/rcluster/internal/topology"
)

func specNodes(nodes []*redistest.Node) []spec.Node {
	out := make([]spec.Node, len(nodes))
	for i, n := range nodes {
		out[i] = spec.Node{Host: "127.0.0.1", Port: n.Port}
	}
	return out
}

// clusterCheck runs the reference checker and asserts a clean bill.
func clusterCheck(t *testing.T, addr string) {
	t.Helper()
	cli := redistest.RequireBinary(t, "redis-cli")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, "--cluster", "check", addr).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster check %s: %v\n%s", addr, err, out)
	}
	if !bytes.Contains(out, []byte("[OK] All 16384 slots covered")) || bytes.Contains(out, []byte("[WARNING]")) ||
		!bytes.Contains(out, []byte("[OK] All nodes agree about slots configuration")) {
		t.Fatalf("redis-cli --cluster check %s:\n%s", addr, out)
	}
}

func clusterNodes(t *testing.T, addr string) []topology.Node {
	t.Helper()
	c := redisconn.Options{}.Node(addr)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.ClusterNodes(ctx).Result()
	if err != nil {
		t.Fatalf("cluster nodes %s: %v", addr, err)
	}
	ns, err := topology.ParseNodes(s)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// assertMatchesPlan checks every node's own view: masters own exactly their
// planned range, replicas follow their planned master.
func assertMatchesPlan(t *testing.T, p *Plan) {
	t.Helper()
	ids := map[string]string{}
	for _, a := range p.Addrs() {
		me, ok := topology.Myself(clusterNodes(t, a))
		if !ok {
			t.Fatalf("%s: no myself", a)
		}
		ids[a] = me.ID
	}
	for _, a := range p.Addrs() {
		view := clusterNodes(t, a)
		if len(view) != len(ids) {
			t.Fatalf("%s knows %d nodes, want %d", a, len(view), len(ids))
		}
		for _, s := range p.Shards {
			m, ok := topology.FindNode(view, ids[s.Master.Addr()])
			if !ok || !m.IsMaster() || len(m.Slots) != 1 || m.Slots[0] != s.Slots || m.Epoch != s.Epoch {
				t.Fatalf("%s sees master %s as %+v, want slots %v epoch %d", a, s.Master.Addr(), m, s.Slots, s.Epoch)
			}
			for _, r := range s.Replicas {
				rn, ok := topology.FindNode(view, ids[r.Addr()])
				if !ok || !rn.IsReplica() || rn.MasterID != ids[s.Master.Addr()] {
					t.Fatalf("%s sees replica %s as %+v, want replica of %s", a, r.Addr(), rn, s.Master.Addr())
				}
			}
		}
	}
}

// formAndCheck forms n fresh nodes (Form's large-cluster path when large)
// and checks the log's phases, the plan, redis-cli's check and CheckReady.
func formAndCheck(t *testing.T, n, replicas int, large bool) {
	redistest.Integration(t)
	nodes := redistest.Start(t, n)
	p, err := NewPlan(specNodes(nodes), replicas)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var log bytes.Buffer
	start := time.Now()
	if err := Form(ctx, p, FormOptions{Log: &log, forceLarge: large}); err != nil {
		t.Fatalf("Form: %v\nlog:\n%s", err, log.String())
	}
	t.Logf("Form of %d nodes (replicas %d, large path %t) took %s:\n%s", n, replicas, large, time.Since(start).Round(time.Millisecond), log.String())
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	phases := []string{"form: pre-check:", "form: slots:", "form: meet:", "form: replicate:", "form: meet:", "form: settle:", "form: ready:"}
	switch {
	case large:
		phases = []string{"form: pre-check:", "form: slots:", "form: meet:", "form: replicate:", "form: meet: no second round", "form: gossip:", "form: settle:", "form: ready:"}
	case n > halfMax:
		// Met along chords: gossip introduces the rest before settle.
		phases = slices.Insert(phases, 5, "form: gossip: every node knows all")
	}
	if len(lines) != len(phases) {
		t.Errorf("want one log line per phase %q, got %d lines", phases, len(lines))
	} else {
		for i, ph := range phases {
			if !strings.HasPrefix(lines[i], ph) {
				t.Errorf("log line %d = %q, want phase %q", i, lines[i], ph)
			}
		}
	}
	for i, s := range Split(len(p.Shards)) {
		if p.Shards[i].Slots != s {
			t.Fatalf("plan shard %d slots %v != Split %v", i, p.Shards[i].Slots, s)
		}
	}
	assertMatchesPlan(t, p)
	clusterCheck(t, nodes[0].Addr)
	if nr := CheckReady(ctx, p.Addrs(), n, redisconn.Options{}); nr != nil {
		t.Fatalf("CheckReady after Form: %s", FormatNotReady(nr))
	}
}

func TestFormThreeMasters(t *testing.T)       { formAndCheck(t, 3, 0, false) }
func TestFormSixNodesOneReplica(t *testing.T) { formAndCheck(t, 6, 1, false) }

// Above halfMax nodes the second MEET round follows chords and Form waits
// for gossip before it settles (see form's step 5).
func TestFormFortyNodesViaGossip(t *testing.T) { formAndCheck(t, 40, 1, false) }

// isPristine asserts the node was left untouched: knows only itself, no
// slots, no config epoch change.
func isPristine(t *testing.T, addr string) {
	t.Helper()
	c := redisconn.Options{}.Node(addr)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.ClusterInfo(ctx).Result()
	if err != nil {
		t.Fatalf("%s: %v", addr, err)
	}
	ci := topology.ParseInfo(s)
	if ci["cluster_known_nodes"] != "1" || ci["cluster_slots_assigned"] != "0" || ci["cluster_current_epoch"] != "0" {
		t.Fatalf("%s was changed: %v", addr, ci)
	}
}

func TestFormRefusesNonEmptyNode(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A cluster node only accepts a write in a slot it serves: give it all
	// slots, SET, and take the slots away again. The key stays in db0, as
	// it would in a stale data directory.
	full := []*redistest.Node{nodes[1], nodes[3]}
	errs := make([]error, len(full))
	parallel(len(full), func(i int) {
		c := redisconn.Options{}.Node(full[i].Addr)
		defer c.Close()
		if err := c.ClusterAddSlotsRange(ctx, 0, 16383).Err(); err != nil {
			errs[i] = err
			return
		}
		// A fresh master answers CLUSTERDOWN for its first ~2s.
		var bo poll.Backoff
		for c.Set(ctx, "somekey", "v", 0).Err() != nil {
			if err := bo.Wait(ctx); err != nil {
				errs[i] = fmt.Errorf("SET on %s never succeeded: %w", full[i].Addr, err)
				return
			}
		}
		errs[i] = c.ClusterDelSlotsRange(ctx, 0, 16383).Err()
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(specNodes(nodes), 0)
	if err != nil {
		t.Fatal(err)
	}
	err = Form(ctx, p, FormOptions{})
	if err == nil {
		t.Fatal("Form accepted a node with keys")
	}
	msg := err.Error()
	for _, want := range []string{
		"node " + nodes[1].Addr + " is not empty (1 keys)",
		"node " + nodes[3].Addr + " is not empty (1 keys)",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if strings.Contains(msg, nodes[0].Addr) || strings.Contains(msg, nodes[2].Addr) {
		t.Errorf("error names empty nodes: %s", msg)
	}
	if !errors.Is(err, ErrRefused) {
		t.Errorf("error does not wrap ErrRefused: %v", err)
	}
	isPristine(t, nodes[0].Addr)
	isPristine(t, nodes[2].Addr)
}

func TestFormRefusesNonClusterNode(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 2)
	plain := redistest.Start(t, 1, "--cluster-enabled", "no")
	all := append(nodes, plain...)
	p, err := NewPlan(specNodes(all), 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = Form(ctx, p, FormOptions{})
	if err == nil || !strings.Contains(err.Error(), "node "+plain[0].Addr+" is not cluster-enabled") {
		t.Fatalf("Form error = %v", err)
	}
	isPristine(t, nodes[0].Addr)
}

// formMustFail forms nodes (replicas 0) under a deadline and requires Form
// to fail within deadline+slack; it returns how long it took and the error.
func formMustFail(t *testing.T, nodes []*redistest.Node, deadline, slack time.Duration) (time.Duration, error) {
	t.Helper()
	p, err := NewPlan(specNodes(nodes), 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	err = Form(ctx, p, FormOptions{})
	el := time.Since(start)
	if err == nil {
		t.Fatal("Form succeeded on nodes that cannot form a cluster")
	}
	if el > deadline+slack {
		t.Fatalf("Form took %s with a %s deadline", el, deadline)
	}
	return el, err
}

func TestFormStoppedNodeIsBounded(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3)
	nodes[2].Signal(t, syscall.SIGSTOP)
	t.Cleanup(func() { _ = nodes[2].Cmd.Process.Signal(syscall.SIGCONT) })
	el, err := formMustFail(t, nodes, 1500*time.Millisecond, time.Second)
	if !strings.Contains(err.Error(), "node "+nodes[2].Addr+" is not reachable: no answer in time") {
		t.Fatalf("error does not name the stopped node as timed out: %v", err)
	}
	t.Logf("after %s: %v", el.Round(time.Millisecond), err)
	isPristine(t, nodes[0].Addr)
}

// A node whose bus port cannot be reached (here: it announces a bus port
// nobody listens on, like a firewalled bus port) can never join: Form must
// give up at the deadline and say which nodes are stuck and why.
func TestFormUnreachableBusTimesOut(t *testing.T) {
	redistest.Integration(t)
	good := redistest.Start(t, 3)
	dead := strconv.Itoa(redistest.PortBlock(t, 1))
	bad := redistest.Start(t, 1, "--cluster-announce-bus-port", dead)
	all := append(good, bad...)
	el, err := formMustFail(t, all, 3*time.Second, time.Second)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error does not wrap context.DeadlineExceeded: %v", err)
	}
	msg := err.Error()
	for _, n := range good {
		if !strings.Contains(msg, n.Addr+": ") {
			t.Errorf("error does not name %s: %s", n.Addr, msg)
		}
	}
	if !strings.Contains(msg, "does not know "+bad[0].Addr) {
		t.Errorf("error does not say why: %s", msg)
	}
	t.Logf("after %s: %v", el.Round(time.Millisecond), err)
}

func TestWaitReadyOnReferenceCluster(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 6)
	redistest.CreateCluster(t, nodes, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	if err := WaitReady(ctx, redistest.Addrs(nodes), 6, redisconn.Options{}); err != nil {
		t.Fatalf("WaitReady on a redis-cli cluster: %v", err)
	}
	t.Logf("WaitReady took %s", time.Since(start).Round(time.Millisecond))
	// Asked for the wrong node count it must not pass, and must say why.
	nr := CheckReady(ctx, redistest.Addrs(nodes), 7, redisconn.Options{})
	if len(nr) != 6 || !strings.Contains(nr[0].Reason, "cluster_known_nodes:6 (want 7)") {
		t.Fatalf("CheckReady with expect 7 = %v", nr)
	}
}

// A stopped master: CheckReady names it (no answer) and the nodes that see
// it failing; WaitReady gives up at the deadline with the same diagnosis.
func TestCheckReadyNamesStoppedNode(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3)
	redistest.CreateCluster(t, nodes, 0)
	nodes[1].Signal(t, syscall.SIGSTOP)
	t.Cleanup(func() { _ = nodes[1].Cmd.Process.Signal(syscall.SIGCONT) })
	o := redisconn.Options{Timeout: 300 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	err := WaitReady(ctx, redistest.Addrs(nodes), 3, o)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady = %v", err)
	}
	if !strings.Contains(err.Error(), nodes[1].Addr+": no answer") {
		t.Fatalf("error does not name the stopped node: %v", err)
	}
	t.Logf("%v", err)
}

func TestCheckReadyOnFreshNodes(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nr := CheckReady(ctx, redistest.Addrs(nodes), 3, redisconn.Options{})
	if len(nr) != 3 {
		t.Fatalf("CheckReady = %v", nr)
	}
	for i, n := range nr {
		if n.Addr != nodes[i].Addr || !strings.Contains(n.Reason, "cluster_state:fail") ||
			!strings.Contains(n.Reason, "cluster_known_nodes:1 (want 3)") || !strings.Contains(n.Reason, "16384 slots unassigned") {
			t.Fatalf("CheckReady[%d] = %v", i, n)
		}
	}
}

var masterLine = regexp.MustCompile(`Master\[\d+\] -> Slots (\d+) - (\d+)`)

// redis-cli itself is the oracle for Split: it prints its allocation and
// asks for confirmation; answering "no" changes nothing. One empty node
// listed m times makes it plan m masters. 78, 333 and 500 are counts where
// float64 arithmetic would give other boundaries than redis-cli's float32.
func TestSplitMatchesRedisCli(t *testing.T) {
	redistest.Integration(t)
	cli := redistest.RequireBinary(t, "redis-cli")
	node := redistest.Start(t, 1)[0]
	counts := []int{3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 17, 25, 31, 33, 50, 64, 78, 99, 100, 127, 128, 200, 255, 333, 500}
	for _, m := range counts {
		args := []string{"--cluster", "create"}
		for i := 0; i < m; i++ {
			args = append(args, node.Addr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, cli, args...)
		cmd.Stdin = strings.NewReader("no\n")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("redis-cli with %d masters: %v\n%s", m, err, out)
		}
		var got []string
		for _, sm := range masterLine.FindAllStringSubmatch(string(out), -1) {
			got = append(got, sm[1]+"-"+sm[2])
		}
		split := Split(m)
		if len(got) != m {
			t.Fatalf("redis-cli printed %d ranges for %d masters:\n%s", len(got), m, out)
		}
		for i, r := range split {
			if want := strconv.Itoa(r.Start) + "-" + strconv.Itoa(r.End); got[i] != want {
				t.Fatalf("%d masters, master %d: redis-cli %s, Split %s", m, i, got[i], want)
			}
		}
	}
	isPristine(t, node.Addr)
}

// Nodes named by hostname: clients dial the name, MEET gets the resolved IP.
func TestFormWithHostnames(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3)
	sn := specNodes(nodes)
	for i := range sn {
		sn[i].Host = "localhost"
	}
	p, err := NewPlan(sn, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := Form(ctx, p, FormOptions{}); err != nil {
		t.Fatalf("Form with hostnames: %v", err)
	}
	clusterCheck(t, nodes[0].Addr)
	for _, n := range clusterNodes(t, nodes[1].Addr) {
		if n.IP() != "127.0.0.1" {
			t.Fatalf("node announced as %s, want 127.0.0.1", n.Addr)
		}
	}
}

// The same server under two names would be asked to be two nodes.
func TestFormRefusesSameNodeTwice(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3)
	sn := specNodes(nodes)
	sn[2] = spec.Node{Host: "localhost", Port: nodes[0].Port}
	p, err := NewPlan(sn, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = Form(ctx, p, FormOptions{})
	if err == nil || !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "are the same redis-server") {
		t.Fatalf("Form = %v", err)
	}
	isPristine(t, nodes[0].Addr)
	isPristine(t, nodes[1].Addr)
}

// Masters that idled past their first 2s without slots would stay in
// cluster_state:fail for cluster-node-timeout (5s here) after getting
// them; Form lowers the timeout meanwhile and must put it back.
func TestFormIdleNodesRestoresNodeTimeout(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3, "--cluster-node-timeout", "5000")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	waitUptime(t, ctx, nodes, 3)
	p, err := NewPlan(specNodes(nodes), 0)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	start := time.Now()
	if err := Form(ctx, p, FormOptions{Log: &log}); err != nil {
		t.Fatalf("Form: %v\n%s", err, log.String())
	}
	el := time.Since(start)
	t.Logf("Form on idle nodes with node-timeout 5000 took %s\n%s", el.Round(time.Millisecond), log.String())
	if el > 4500*time.Millisecond {
		t.Errorf("Form took %s: the 5s rejoin delay was not avoided", el)
	}
	if !strings.Contains(log.String(), "cluster-node-timeout 2000ms on 3 idle masters") {
		t.Errorf("log does not mention the lowered timeout:\n%s", log.String())
	}
	for _, n := range nodes {
		c := redisconn.Options{}.Node(n.Addr)
		v, err := c.ConfigGet(ctx, "cluster-node-timeout").Result()
		c.Close()
		if err != nil || v["cluster-node-timeout"] != "5000" {
			t.Fatalf("%s: cluster-node-timeout = %v (%v), want 5000 restored", n.Addr, v, err)
		}
	}
}

// The large-cluster path (largeMin: one MEET round, no nudges, gossip and
// Redis's own pings do the rest) forms a correct cluster too; forced here
// on 6 nodes so it runs in seconds.
func TestFormLargePath(t *testing.T) { formAndCheck(t, 6, 1, true) }

// TestIntroduce: a node that does not know two members MEETs them, except
// a pair introduced less than nudgeEvery ago; it then knows the one it met
// (and only that one: nobody else could have told it).
func TestIntroduce(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ms []*member
	for _, n := range specNodes(nodes) {
		m := &member{node: n, addr: n.Addr(), c: nodeClient(redisconn.Options{}, n.Addr())}
		defer m.c.Close()
		ms = append(ms, m)
	}
	if err := precheck(ctx, ms); err != nil {
		t.Fatal(err)
	}
	recent := map[[2]int]time.Time{{0, 2}: time.Now()}
	n, err := introduce(ctx, ms, []int{0}, recent)
	if err != nil || n != 1 {
		t.Fatalf("introduce = %d, %v; want 1 MEET (node 0 to node 1; 0 to 2 was just introduced)", n, err)
	}
	knows := func(x, y int) bool {
		for _, v := range clusterNodes(t, ms[x].addr) {
			if v.ID == ms[y].id && !v.HasFlag("handshake") {
				return true
			}
		}
		return false
	}
	for bo := (poll.Backoff{}); !knows(0, 1); {
		if err := bo.Wait(ctx); err != nil {
			t.Fatalf("node 0 does not know node 1 after the introduction: %v", err)
		}
	}
	if knows(0, 2) {
		t.Error("node 0 knows node 2, which it was not introduced to")
	}
}
