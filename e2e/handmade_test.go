package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

// TestOpsOnHandMadeCluster: a cluster made by hand (redis-server processes
// rcluster did not start, formed by `redis-cli --cluster create
// --cluster-replicas 1`), named in a runtime: external spec, changed by
// rcluster under a client writing and reading throughout: a graceful
// failover, a held migration finished, a reshard and a rebalance. After each
// command every node agrees, no slot is open, `redis-cli --cluster check`
// passes; no acknowledged write is lost.
func TestOpsOnHandMadeCluster(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 6)
	redistest.CreateCluster(t, nodes, 1)
	if err := redistest.WaitClusterOK(ctxFor(t, 30*time.Second), nodes); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("name: handmade\nruntime: external\nreplicas: 1\ndir: ./state\nnodes:\n")
	var ports []int
	for _, n := range nodes {
		fmt.Fprintf(&b, "  - {host: 127.0.0.1, port: %d}\n", n.Port)
		ports = append(ports, n.Port)
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rcluster(t, dir, "down") })
	mustRun(t, dir, "up")
	preload(t, addrsOf(ports), 5000)
	w := startWorkload(t, addrsOf(ports))

	// redis-cli made the first three masters.
	masters := ports[:3]
	r := mustRun(t, dir, "failover", strconv.Itoa(masters[0]))
	t.Logf("failover: %s", firstLine(r.stderr+r.stdout))
	settled(t, ports)
	if role := roleOf(t, agreeNow(t, addrsOf(ports)), addr(masters[0])); role != "replica" {
		t.Errorf("after failover %s is %s, want a replica", addr(masters[0]), role)
	}
	// Masters now: the promoted replica and the other two.
	var now []int
	promoted := 0 // owner of slot 0
	for _, n := range agreeNow(t, addrsOf(ports)) {
		if n.IsMaster() {
			now = append(now, n.Port())
			if len(n.Slots) > 0 && n.Slots[0].Start == 0 {
				promoted = n.Port()
			}
		}
	}
	if len(now) != 3 || promoted == 0 || promoted == masters[0] {
		t.Fatalf("masters after failover: %v, owner of slot 0: %d", now, promoted)
	}
	mustRun(t, dir, "migrate", "--slots", "6000", "--to", strconv.Itoa(promoted), "--hold")
	mustRun(t, dir, "migrate", "--finish")
	settled(t, ports)
	r = mustRun(t, dir, "reshard", "--from", strconv.Itoa(now[1]), "--to", strconv.Itoa(now[2]), "--slots", "1500")
	t.Logf("reshard: %s", firstLine(r.stderr))
	settled(t, ports)
	r = mustRun(t, dir, "rebalance")
	t.Logf("rebalance: %s", firstLine(r.stderr))
	settled(t, ports)

	w.stop(t, addrsOf(ports))
	if got, want := dbsizes(t, ports), int64(5000+len(w.last)); got != want {
		t.Errorf("keys after the changes: %d, want %d (5000 preloaded + %d written)", got, want, len(w.last))
	}
}
