package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
	"github.com/rcluster/rcluster/internal/topology"
)

// These tests drive the commands that change a running cluster (failover,
// node, reset) through the built binary, and hold them to the guarantee:
// when a command returns, every node already agrees (no polling here).

// agreeNow reads every listed node's CLUSTER NODES once and fails unless
// they all agree on roles and slot owners; it returns one view.
func agreeNow(t *testing.T, addrs []string) []topology.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ref []topology.Node
	var refAddr, slotRef, roleRef string
	for _, a := range addrs {
		cl := redisconn.Options{Timeout: 2 * time.Second}.Node(a)
		txt, err := cl.ClusterNodes(ctx).Result()
		cl.Close()
		if err != nil {
			t.Fatalf("CLUSTER NODES on %s: %v", a, err)
		}
		v, err := topology.ParseNodes(txt)
		if err != nil {
			t.Fatal(err)
		}
		s, r := topology.SlotSignature(v), topology.RoleSignature(v)
		if ref == nil {
			ref, refAddr, slotRef, roleRef = v, a, s, r
			continue
		}
		if s != slotRef || r != roleRef {
			t.Errorf("right after the command, %s disagrees with %s on slots or roles:\n%s", a, refAddr, txt)
		}
	}
	return ref
}

func roleOf(t *testing.T, view []topology.Node, a string) string {
	t.Helper()
	for _, n := range view {
		if n.Addr == a {
			if n.IsMaster() {
				return "master"
			}
			return "replica"
		}
	}
	t.Fatalf("%s not in the view", a)
	return ""
}

// TestFailoverNodeResetCLI: on 6 nodes (3 masters, 1 replica each), a
// graceful failover, kill --wait-failover, start, pause, up (resumes),
// reset, each checked right after it returns: every node agrees, and
// redis-cli --cluster check passes; bad input exits 2 changing nothing.
func TestFailoverNodeResetCLI(t *testing.T) {
	dir, ports := writeSpec(t, 6, 1, fastFailover)
	mustRun(t, dir, "up")
	all := addrsOf(ports)

	// Unknown node: usage error listing the nodes.
	r := rcluster(t, dir, "failover", "9")
	if r.code != 2 || !strings.Contains(r.stderr, "is not a node of this cluster") || !strings.Contains(r.stderr, all[5]) {
		t.Errorf("failover of an unknown node: exit %d, want 2 listing the nodes:\n%s", r.code, r.stderr)
	}
	if r := rcluster(t, dir, "node", "kill", "127.0.0.1:1"); r.code != 2 {
		t.Errorf("node kill of an unknown node: exit %d, want 2:\n%s", r.code, r.stderr)
	}
	if r := rcluster(t, dir, "failover", "--slot", "16384"); r.code != 2 {
		t.Errorf("failover --slot 16384: exit %d, want 2", r.code)
	}
	// A replica cannot receive slots: usage error, nothing moves.
	if r := rcluster(t, dir, "migrate", "--slots", "1", "--to", strconv.Itoa(ports[3])); r.code != 2 || !strings.Contains(r.stderr, "is a replica") {
		t.Errorf("migrate --to a replica: exit %d, want 2:\n%s", r.code, r.stderr)
	}
	if roleOf(t, agreeNow(t, all), all[0]) != "master" {
		t.Fatal("a refused command changed the cluster")
	}

	// Graceful failover of the first master, by port; JSON result.
	r = mustRun(t, dir, "failover", strconv.Itoa(ports[0]), "--json")
	var fo struct {
		Old     struct{ Addr string } `json:"old_master"`
		New     struct{ Addr string } `json:"new_master"`
		AgreeNS int64                 `json:"agreed_ns"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &fo); err != nil {
		t.Fatalf("failover --json: %v\n%s", err, r.stdout)
	}
	t.Logf("MEASURED failover %s -> %s: every node agreed after %s", fo.Old.Addr, fo.New.Addr, time.Duration(fo.AgreeNS).Round(time.Millisecond))
	v := agreeNow(t, all)
	if fo.Old.Addr != all[0] || roleOf(t, v, all[0]) != "replica" || roleOf(t, v, fo.New.Addr) != "master" {
		t.Errorf("after failover: old %s new %s; %s is %s", fo.Old.Addr, fo.New.Addr, all[0], roleOf(t, v, all[0]))
	}
	clusterCheck(t, ports[1])

	// Kill a master, flags after the node, and wait for its replica.
	mustRun(t, dir, "node", "kill", strconv.Itoa(ports[1]), "--wait-failover")
	live := without(all, all[1])
	v = agreeNow(t, live)
	if roleOf(t, v, all[1]) != "master" || !strings.Contains(flagsOf(v, all[1]), "fail") {
		t.Errorf("killed master %s: flags %q", all[1], flagsOf(v, all[1]))
	}
	if st := status(t, dir)[ports[1]]; st.Running {
		t.Errorf("status after kill: %s still running", all[1])
	}
	clusterCheck(t, ports[2])

	// rcluster events records what the commands did and saw.
	r = mustRun(t, dir, "events", "--json")
	kinds := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var ev struct{ Time, Kind, Node, Message string }
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Time == "" || ev.Message == "" {
			t.Fatalf("events --json line %q: %v", line, err)
		}
		kinds[ev.Kind]++
	}
	if kinds["failover"] < 2 || kinds["node"] < 1 || kinds["up"] < 1 {
		t.Errorf("events after up, failover and kill --wait-failover: %v\n%s", kinds, r.stdout)
	}

	// Start it again: it rejoins as a replica, everyone agrees at once.
	mustRun(t, dir, "node", "start", strconv.Itoa(ports[1]))
	v = agreeNow(t, all)
	if roleOf(t, v, all[1]) != "replica" {
		t.Errorf("restarted old master %s is %s, want replica", all[1], roleOf(t, v, all[1]))
	}
	clusterCheck(t, ports[0])

	// Pause a node: it is reported paused; up resumes it.
	mustRun(t, dir, "node", "pause", strconv.Itoa(ports[5]))
	if r := rcluster(t, dir, "status"); r.code != 1 || !strings.Contains(r.stderr, all[5]+" paused") {
		t.Errorf("status with a paused node: exit %d:\n%s", r.code, r.stderr)
	}
	mustRun(t, dir, "up")
	mustRun(t, dir, "status")

	// Reset: planned roles, no keys, every node agrees.
	cl := redisconn.Options{Timeout: 2 * time.Second}.Node(all[2])
	_ = cl.Do(context.Background(), "SET", "{"+topology.KeyForSlot(11000)+"}x", "v").Err()
	cl.Close()
	r = mustRun(t, dir, "reset")
	t.Logf("reset: %s", strings.TrimSpace(r.stderr))
	v = agreeNow(t, all)
	for i, a := range all {
		want := "replica"
		if i < 3 {
			want = "master"
		}
		if got := roleOf(t, v, a); got != want {
			t.Errorf("after reset %s is %s, want %s as planned", a, got, want)
		}
	}
	for _, n := range statusNodes(t, dir) {
		if n.Keys != 0 {
			t.Errorf("after reset %s holds %d keys", n.Addr, n.Keys)
		}
	}
	clusterCheck(t, ports[0])

	// Partition needs its own network per node: refused on processes.
	if r := rcluster(t, dir, "node", "partition", strconv.Itoa(ports[0])); r.code != 1 || !strings.Contains(r.stderr, "runtime process") {
		t.Errorf("node partition on runtime process: exit %d, want 1 naming the runtime:\n%s", r.code, r.stderr)
	}
}

func flagsOf(v []topology.Node, a string) string {
	for _, n := range v {
		if n.Addr == a {
			return strings.Join(n.Flags, ",")
		}
	}
	return ""
}

// TestFailoverWithoutReplicaRefused: a shard without a replica cannot fail
// over (exit 1, saying so), and kill --wait-failover of its master is
// refused before anything is done: the node still runs.
func TestFailoverWithoutReplicaRefused(t *testing.T) {
	dir, ports := writeSpec(t, 3, 0, fastFailover)
	mustRun(t, dir, "up")
	r := rcluster(t, dir, "failover", strconv.Itoa(ports[0]))
	if r.code != 1 || !strings.Contains(r.stderr, "no replica") {
		t.Errorf("failover of a shard without replica: exit %d, want 1 saying so:\n%s", r.code, r.stderr)
	}
	r = rcluster(t, dir, "node", "kill", "--wait-failover", strconv.Itoa(ports[0]))
	if r.code != 1 || !strings.Contains(r.stderr, "no replica") || !strings.Contains(r.stderr, "nothing was done") {
		t.Errorf("kill --wait-failover of a master without replica: exit %d:\n%s", r.code, r.stderr)
	}
	if st := status(t, dir)[ports[0]]; !st.Running {
		t.Errorf("a refused kill stopped %s", addr(ports[0]))
	}
}

// TestExternalRefusesFaults: kill, stop and pause of nodes rcluster did not
// start are refused (exit 2) and leave them running.
func TestExternalRefusesFaults(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3)
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("name: ext\nruntime: external\nreplicas: 0\ndir: ./state\nnodes:\n")
	for _, n := range nodes {
		fmt.Fprintf(&b, "  - {host: 127.0.0.1, port: %d}\n", n.Port)
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rcluster(t, dir, "down", "--purge") })
	mustRun(t, dir, "up")
	for _, op := range []string{"kill", "stop", "pause"} {
		r := rcluster(t, dir, "node", op, strconv.Itoa(nodes[0].Port))
		if r.code != 2 || !strings.Contains(r.stderr, "rcluster did not start this node") {
			t.Errorf("node %s on runtime external: exit %d, want 2:\n%s", op, r.code, r.stderr)
		}
	}
	if err := redistest.WaitPing(ctxFor(t, 5*time.Second), nodes[0].Addr); err != nil {
		t.Errorf("a refused fault touched %s: %v", nodes[0].Addr, err)
	}
}
