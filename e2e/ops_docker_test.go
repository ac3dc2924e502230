package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestDockerNodeOpsAndFailover: the same commands on runtime docker, where
// kill, pause and start act on the nodes' containers: kill
// --wait-failover, start, pause, resume, failover and reset each return
// with every node agreeing, and redis-cli --cluster check passing from the
// host.
func TestDockerNodeOpsAndFailover(t *testing.T) {
	dir, ports, _ := dockerSpec(t, 6, 1, fastFailover)
	mustRun(t, dir, "up")
	all := addrsOf(ports)

	mustRun(t, dir, "node", "kill", strconv.Itoa(ports[0]), "--wait-failover")
	v := agreeNow(t, without(all, all[0]))
	if !strings.Contains(flagsOf(v, all[0]), "fail") {
		t.Errorf("killed container's node %s: flags %q", all[0], flagsOf(v, all[0]))
	}
	if st := status(t, dir)[ports[0]]; st.Running {
		t.Errorf("status after docker kill: %s still running", all[0])
	}
	mustRun(t, dir, "node", "start", strconv.Itoa(ports[0]))
	if roleOf(t, agreeNow(t, all), all[0]) != "replica" {
		t.Errorf("restarted container %s did not rejoin as a replica", all[0])
	}
	clusterCheck(t, ports[1])

	mustRun(t, dir, "node", "pause", strconv.Itoa(ports[4]))
	if r := rcluster(t, dir, "status"); r.code != 1 || !strings.Contains(r.stderr, all[4]+" paused") {
		t.Errorf("status with a paused container: exit %d:\n%s", r.code, r.stderr)
	}
	mustRun(t, dir, "node", "resume", strconv.Itoa(ports[4]))
	agreeNow(t, all)

	mustRun(t, dir, "failover", strconv.Itoa(ports[1]))
	if roleOf(t, agreeNow(t, all), all[1]) != "replica" {
		t.Errorf("after failover %s is still a master", all[1])
	}
	mustRun(t, dir, "reset")
	v = agreeNow(t, all)
	for i, a := range all[:3] {
		if roleOf(t, v, a) != "master" {
			t.Errorf("after reset planned master %d (%s) is a replica", i, a)
		}
	}
	clusterCheck(t, ports[0])

	if r := rcluster(t, dir, "node", "kill", "127.0.0.1:1"); r.code != 2 {
		t.Errorf("unknown node on docker: exit %d, want 2", r.code)
	}
	r := mustRun(t, dir, "events", "--json")
	for _, kind := range []string{`"kind":"failover"`, `"kind":"node"`, `"kind":"reset"`} {
		if !strings.Contains(r.stdout, kind) {
			t.Errorf("events on docker lack %s:\n%s", kind, r.stdout)
		}
	}
}

// TestDockerMigrateAndScale: slot moves and scaling by editing the spec on
// runtime docker, with a client writing and reading throughout: migrate,
// reshard, a scale from 3 to 4 masters (a new container started and
// joined) and back; nothing lost, every node agreeing after each command.
func TestDockerMigrateAndScale(t *testing.T) {
	dir, ports, _ := dockerSpec(t, 4, 0, "")
	setPorts(t, dir, ports[3], ports[2])
	three := ports[:3]
	mustRun(t, dir, "up")
	preload(t, addrsOf(three), 5000)
	w := startWorkload(t, addrsOf(three))
	mustRun(t, dir, "migrate", "--slots", "0-499", "--to", strconv.Itoa(three[1]))
	settled(t, three)
	mustRun(t, dir, "reshard", "--to", strconv.Itoa(three[0]), "--slots", "700")
	settled(t, three)
	setPorts(t, dir, ports[2], ports[3])
	mustRun(t, dir, "up")
	settled(t, ports)
	setPorts(t, dir, ports[3], ports[2])
	mustRun(t, dir, "up")
	settled(t, three)
	w.stop(t, addrsOf(three))
	if got, want := dbsizes(t, three), int64(5000+len(w.last)); got != want {
		t.Errorf("keys after the moves on docker: %d, want %d", got, want)
	}
}

// TestDockerReplicasBecomeMasters: on runtime docker, replicas 1 -> 0 on
// the same six containers makes the three replicas masters (forgotten,
// reset, rejoined, given slots), with a client writing throughout; then a
// reshard that empties a master (Redis makes it a replica) and `reset
// --keep-data` bring back the planned split with every key.
func TestDockerReplicasBecomeMasters(t *testing.T) {
	dir, ports, _ := dockerSpec(t, 6, 1, fastFailover)
	mustRun(t, dir, "up")
	preload(t, addrsOf(ports), 5000)
	w := startWorkload(t, addrsOf(ports))
	path := filepath.Join(dir, "cluster.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), "replicas: 1", "replicas: 0", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, dir, "up")
	settled(t, ports)
	for _, n := range statusNodes(t, dir) {
		if n.Role != "master" || n.Slots == "" {
			t.Errorf("after replicas 1 -> 0 on docker: %s is %s with slots %q", n.Addr, n.Role, n.Slots)
		}
	}
	w.stop(t, addrsOf(ports))
	want := int64(5000 + len(w.last))
	if got := dbsizes(t, ports); got != want {
		t.Errorf("keys after replicas 1 -> 0 on docker: %d, want %d", got, want)
	}

	var first string
	for _, n := range statusNodes(t, dir) {
		if n.Port == ports[0] {
			first = n.Slots
		}
	}
	mustRun(t, dir, "reshard", "--from", strconv.Itoa(ports[0]), "--to", strconv.Itoa(ports[1]), "--slots", strconv.Itoa(slotCount(t, first)))
	settled(t, ports)
	r := mustRun(t, dir, "reset", "--keep-data")
	t.Logf("reset: %s", strings.TrimSpace(r.stderr+r.stdout))
	settled(t, ports)
	// The planned split of six masters (redis-cli's), which reset restores
	// whatever scaling and the reshard left.
	planned := []string{"0-2730", "2731-5460", "5461-8191", "8192-10922", "10923-13652", "13653-16383"}
	for _, n := range statusNodes(t, dir) {
		if i := slices.Index(ports, n.Port); n.Role != "master" || n.Slots != planned[i] {
			t.Errorf("after reset %s is %s with slots %q, want the planned master of %s", n.Addr, n.Role, n.Slots, planned[i])
		}
	}
	if got := dbsizes(t, ports); got != want {
		t.Errorf("keys after reshard and reset --keep-data on docker: %d, want %d", got, want)
	}
}

// slotCount counts the slots of a "a-b,c" list.
func slotCount(t *testing.T, list string) int {
	t.Helper()
	n := 0
	for _, r := range strings.Split(list, ",") {
		lo, hi, ok := strings.Cut(r, "-")
		if !ok {
			hi = lo
		}
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b, err2 := strconv.Atoi(strings.TrimSpace(hi))
		if err1 != nil || err2 != nil {
			t.Fatalf("slot list %q", list)
		}
		n += b - a + 1
	}
	return n
}
