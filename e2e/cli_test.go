package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

// writeSpec writes a cluster.yaml for n nodes on a free port block into a
// temp dir, registers `down --purge` at cleanup, and returns the dir and ports.
func writeSpec(t *testing.T, n, replicas int, extra string) (string, []int) {
	t.Helper()
	redistest.RequireBinary(t, "redis-server")
	return writeSpecIn(t, t.TempDir(), n, replicas, extra)
}

// writeSpecIn is writeSpec into an existing directory.
func writeSpecIn(t *testing.T, dir string, n, replicas int, extra string) (string, []int) {
	t.Helper()
	base := redistest.PortBlock(t, n)
	yaml := fmt.Sprintf("name: e2e\nhost: 127.0.0.1\nports: \"%d-%d\"\nreplicas: %d\ndir: ./state\n%s",
		base, base+n-1, replicas, extra)
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r := rcluster(t, dir, "down", "--purge")
		if r.code != 0 {
			t.Errorf("cleanup: down --purge exit %d: %s", r.code, r.stderr)
		}
	})
	ports := make([]int, n)
	for i := range ports {
		ports[i] = base + i
	}
	return dir, ports
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// clusterCheck runs the reference tool's check and requires a clean pass.
func clusterCheck(t *testing.T, port int) string {
	t.Helper()
	cli := redistest.RequireBinary(t, "redis-cli")
	out, err := exec.Command(cli, "--cluster", "check", addr(port)).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster check: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{"[OK] All nodes agree about slots configuration.", "[OK] All 16384 slots covered."} {
		if !strings.Contains(s, want) {
			t.Fatalf("redis-cli --cluster check lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "[WARNING]") || strings.Contains(s, "[ERR]") {
		t.Fatalf("redis-cli --cluster check warns:\n%s", s)
	}
	return s
}

func portFree(port int) bool {
	c, err := net.DialTimeout("tcp", addr(port), 200*time.Millisecond)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

func TestUpVerifyDownLifecycle(t *testing.T) {
	redistest.Integration(t)
	dir, ports := writeSpec(t, 3, 0, "")

	mustRun(t, dir, "up")
	check := clusterCheck(t, ports[0])
	for _, want := range []string{"slots:[0-5460]", "slots:[5461-10922]", "slots:[10923-16383]"} {
		if !strings.Contains(check, want) {
			t.Errorf("slot split: %q missing from check output", want)
		}
	}
	v := mustRun(t, dir, "verify", "--json")
	var rep struct {
		OK     bool `json:"ok"`
		Checks []struct {
			Name string `json:"name"`
			OK   bool   `json:"ok"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(v.stdout), &rep); err != nil {
		t.Fatalf("verify --json is not JSON: %v\n%s", err, v.stdout)
	}
	if !rep.OK || len(rep.Checks) < 10 {
		t.Fatalf("verify report: ok=%v with %d checks", rep.OK, len(rep.Checks))
	}

	// Write data through a real cluster client.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addrs := []string{addr(ports[0]), addr(ports[1]), addr(ports[2])}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	const keys = 300
	for i := 0; i < keys; i++ {
		if err := c.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatalf("set k%d: %v", i, err)
		}
	}
	c.Close()

	st := mustRun(t, dir, "status")
	if got := strings.Count(st.stdout, "master"); got != 3 {
		t.Errorf("status shows %d masters, want 3:\n%s", got, st.stdout)
	}

	// Running and healthy: up is a no-op.
	again := mustRun(t, dir, "up")
	if !strings.Contains(again.stderr, "already up") {
		t.Errorf("second up did not say the cluster was already up:\n%s", again.stderr)
	}

	mustRun(t, dir, "down")
	assertNothingLeft(t, ports)
	if r := rcluster(t, dir, "verify"); r.code != 1 {
		t.Errorf("verify on a stopped cluster: exit %d, want 1", r.code)
	}

	// Up again: the cluster re-forms from nodes.conf with its data.
	mustRun(t, dir, "up")
	clusterCheck(t, ports[0])
	c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	for i := 0; i < keys; i++ {
		got, err := c.Get(ctx, fmt.Sprintf("k%d", i)).Int()
		if err != nil || got != i {
			t.Fatalf("after restart k%d = %d, %v; want %d", i, got, err, i)
		}
	}
	mustRun(t, dir, "verify")

	mustRun(t, dir, "down", "--purge")
	if _, err := os.Stat(filepath.Join(dir, "state")); !os.IsNotExist(err) {
		t.Errorf("state dir still exists after down --purge: %v", err)
	}
	assertNothingLeft(t, ports)
}

func TestUpWithReplicas(t *testing.T) {
	redistest.Integration(t)
	dir, ports := writeSpec(t, 6, 1, "")
	mustRun(t, dir, "up")
	check := clusterCheck(t, ports[0])
	if got := strings.Count(check, "S: "); got != 3 {
		t.Errorf("redis-cli check shows %d replicas, want 3:\n%s", got, check)
	}
	mustRun(t, dir, "verify")
	st := mustRun(t, dir, "status", "--json")
	var status struct {
		Nodes []struct {
			Addr, Role, Master string
			Link               string `json:"link"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(st.stdout), &status); err != nil {
		t.Fatalf("status --json: %v", err)
	}
	replicas := 0
	for _, n := range status.Nodes {
		if n.Role == "replica" {
			replicas++
			if n.Link != "up" || n.Master == "" {
				t.Errorf("replica %s: master %q link %q", n.Addr, n.Master, n.Link)
			}
		}
	}
	if replicas != 3 {
		t.Errorf("status shows %d replicas, want 3", replicas)
	}
}

func TestBadSpecExitsTwoNamingTheLine(t *testing.T) {
	dir := t.TempDir()
	spec := "name: bad\nports: [7001, 7002, 7001]\nreplica: 1\n"
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	r := rcluster(t, dir, "up")
	if r.code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "cluster.yaml:3") || !strings.Contains(r.stderr, "replica") {
		t.Errorf("error does not name cluster.yaml:3 and the unknown key:\n%s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, ".rcluster")); !os.IsNotExist(err) {
		t.Errorf("a bad spec left state behind: %v", err)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"frobnicate"}, {"up", "--no-such-flag"}, {"verify", "-f", "x.yaml", "--addr", "127.0.0.1:1"}} {
		if r := rcluster(t, dir, args...); r.code != 2 {
			t.Errorf("rcluster %v: exit %d, want 2\n%s", args, r.code, r.stderr)
		}
	}
}

func TestVerifyNothingListeningFailsFast(t *testing.T) {
	redistest.Integration(t)
	base := redistest.PortBlock(t, 1)
	start := time.Now()
	r := rcluster(t, t.TempDir(), "verify", "--addr", addr(base))
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	if !strings.Contains(r.stderr, addr(base)) {
		t.Errorf("failure does not name %s:\n%s", addr(base), r.stderr)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("verify against nothing took %s", el)
	}
}
