package e2e

// Reviewer-style scenarios: the built binary against clusters made by the
// reference tool (redis-cli), broken by hand, and error paths a user hits.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

// A first `up` that fails its preflight (here: a mistyped binary name) must
// start nothing and leave no state dir: before the fix it left
// <dir>/rcluster.lock, and `down` then claimed it stopped a cluster whose
// "data is kept" there.
func TestQAFailedFirstUpLeavesNoState(t *testing.T) {
	dir := t.TempDir()
	base := redistest.PortBlock(t, 3)
	yaml := fmt.Sprintf("name: qa\nhost: 127.0.0.1\nports: \"%d-%d\"\nredis_server: redis-servr\ndir: ./state\n", base, base+2)
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	r := rcluster(t, dir, "up")
	if r.code != 1 || !strings.Contains(r.stderr, `"redis-servr" not found`) || !strings.Contains(r.stderr, "nothing was started") {
		t.Fatalf("up with a mistyped binary: exit %d, want 1 naming the binary:\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "state")); !os.IsNotExist(err) {
		t.Fatalf("failed first up left its state dir behind (stat: %v)", err)
	}
	r = rcluster(t, dir, "down")
	if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "nothing to stop") {
		t.Fatalf("down after a failed first up: exit %d, want 0 and \"nothing to stop\":\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// A cluster made by redis-cli passes `verify --addr`; an open slot and a
// frozen (SIGSTOPped) master each fail it fast with exit 1 naming the node;
// `verify --wait` passes again once repaired.
func TestQAHandMadeClusterBreakAndRecover(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 6, "--repl-diskless-sync-delay", "0")
	redistest.CreateCluster(t, nodes, 1)
	seed := nodes[0].Addr
	mustRun(t, t.TempDir(), "verify", "--addr", seed)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c0 := redis.NewClient(&redis.Options{Addr: nodes[0].Addr, DisableIdentity: true, Protocol: 2})
	defer c0.Close()
	target := redis.NewClient(&redis.Options{Addr: nodes[1].Addr, DisableIdentity: true, Protocol: 2})
	defer target.Close()
	id1, err := target.ClusterMyID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Slot 100 belongs to the first master (0-5460), as redis-cli splits.
	if err := c0.Do(ctx, "CLUSTER", "SETSLOT", 100, "MIGRATING", id1).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := rcluster(t, t.TempDir(), "verify", "--addr", seed)
	if r.code != 1 || !strings.Contains(r.stderr, "slot 100") || !strings.Contains(r.stderr, nodes[0].Addr) {
		t.Fatalf("verify with slot 100 MIGRATING: exit %d, want 1 naming slot 100 and %s:\n%s", r.code, nodes[0].Addr, r.stderr)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("verify on an open slot took %s", el)
	}
	if err := c0.Do(ctx, "CLUSTER", "SETSLOT", 100, "STABLE").Err(); err != nil {
		t.Fatal(err)
	}

	nodes[2].Signal(t, syscall.SIGSTOP)
	start = time.Now()
	r = rcluster(t, t.TempDir(), "verify", "--addr", seed, "--timeout", "1s")
	nodes[2].Signal(t, syscall.SIGCONT)
	if r.code != 1 || !strings.Contains(r.stderr, nodes[2].Addr) {
		t.Fatalf("verify with %s frozen: exit %d, want 1 naming it:\n%s", nodes[2].Addr, r.code, r.stderr)
	}
	if el := time.Since(start); el > 15*time.Second {
		t.Errorf("verify with a frozen node took %s", el)
	}
	mustRun(t, t.TempDir(), "verify", "--addr", seed, "--wait", "20s")
}
