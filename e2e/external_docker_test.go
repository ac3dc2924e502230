package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/e2e/containers"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/slots"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

// These tests drive runtime external: redis-server containers that rcluster
// did not start, each on its own IP (a "host"), formed into a cluster by
// `rcluster create` or `rcluster up` with a runtime: external spec.

// specNodes turns addresses into spec nodes.
func specNodes(t *testing.T, addrs []string) []spec.Node {
	t.Helper()
	out := make([]spec.Node, len(addrs))
	for i, a := range addrs {
		n, err := spec.ParseNode(a)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = n
	}
	return out
}

// requirePlanned checks that the cluster, as addr sees it, is exactly
// slots.NewPlan(nodes, replicas): same masters with the same slot ranges,
// same replica of each, and that no replica shares its master's host
// unless the plan had to.
func requirePlanned(ctx context.Context, t *testing.T, addr string, nodes []spec.Node, replicas int) {
	t.Helper()
	plan, err := slots.NewPlan(nodes, replicas)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := slots.NewPlan(nodes, replicas)
	if fmt.Sprint(plan) != fmt.Sprint(again) {
		t.Fatalf("NewPlan is not deterministic:\n%v\n%v", plan, again)
	}
	eventually(ctx, t, 10*time.Second, "cluster matches the plan", func(ctx context.Context) error {
		v, err := view(ctx, addr)
		if err != nil {
			return err
		}
		for _, sh := range plan.Shards {
			m, ok := byAddr(v, sh.Master.Addr())
			want := fmt.Sprintf("%d-%d", sh.Slots.Start, sh.Slots.End)
			if !ok || !m.has("master") || len(m.Slots) != 1 || m.Slots[0] != want {
				return fmt.Errorf("master %s: %+v, want master of %s", sh.Master.Addr(), m, want)
			}
			for _, r := range sh.Replicas {
				rn, ok := byAddr(v, r.Addr())
				if !ok || !rn.has("slave") || rn.MasterID != m.ID {
					return fmt.Errorf("replica %s: %+v, want replica of %s", r.Addr(), rn, sh.Master.Addr())
				}
			}
		}
		return nil
	})
	for _, sh := range plan.Shards {
		for _, r := range sh.Replicas {
			if r.Host == sh.Master.Host {
				t.Errorf("replica %s shares host %s with its master %s", r.Addr(), r.Host, sh.Master.Addr())
			}
		}
		t.Logf("master %s (slots %d-%d), replicas %v", sh.Master.Addr(), sh.Slots.Start, sh.Slots.End, sh.Replicas)
	}
}

// TestExternalCreateAcrossHosts: `rcluster create` forms 3 masters + 3
// replicas on six containers (six IPs) exactly as planned, verify passes, a
// go-redis ClusterClient on the host writes through every master and every
// replica holds its master's keys, and create again is a no-op.
func TestExternalCreateAcrossHosts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	containers.RequireDocker(t)
	nw := containers.NewNetwork(ctx, t)
	nodes := containers.StartRedisNodes(ctx, t, nw, 6)
	addrs := containers.Addrs(nodes)

	start := time.Now()
	mustRun(t, t.TempDir(), append([]string{"create"}, append(addrs, "--replicas", "1")...)...)
	t.Logf("create on 6 containers took %v", time.Since(start).Round(time.Millisecond))
	requirePlanned(ctx, t, addrs[0], specNodes(t, addrs), 1)
	mustRun(t, t.TempDir(), "verify", "--addr", addrs[0])

	cc := redisconn.Options{}.Cluster(addrs)
	defer cc.Close()
	writeKeys(ctx, t, cc, 3, true)
	// Each replica holds exactly its master's keys.
	v, err := view(ctx, addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]clusterNode{}
	for _, n := range v {
		byID[n.ID] = n
	}
	for _, n := range v {
		if !n.has("slave") {
			continue
		}
		m := byID[n.MasterID]
		ms, rs := dbsize(ctx, t, m.Addr), dbsize(ctx, t, n.Addr)
		if ms == 0 || ms != rs {
			t.Errorf("master %s has %d keys, its replica %s %d", m.Addr, ms, n.Addr, rs)
		}
	}

	again := mustRun(t, t.TempDir(), append([]string{"create"}, append(addrs, "--replicas", "1")...)...)
	if !strings.Contains(again.stderr, "already up") {
		t.Errorf("create on the formed cluster is not a no-op:\n%s", again.stderr)
	}
}

func dbsize(ctx context.Context, t *testing.T, addr string) int64 {
	t.Helper()
	c := redisconn.Options{}.Node(addr)
	defer c.Close()
	n, err := c.DBSize(ctx).Result()
	if err != nil {
		t.Fatalf("DBSIZE on %s: %v", addr, err)
	}
	return n
}

// TestExternalAntiAffinity: three containers each run two nodes (6379 and
// 6380), so three hosts hold six nodes. Listed port by port (every host's
// 6379, then every host's 6380), pairing the i-th replica with the i-th
// master would put each replica on its master's host; the cluster create
// forms must match the deterministic plan, where no replica shares its
// master's host.
func TestExternalAntiAffinity(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	containers.RequireDocker(t)
	nw := containers.NewNetwork(ctx, t)
	hosts := containers.StartRedisNodes(ctx, t, nw, 3)
	var firsts, seconds []string
	for _, h := range hosts {
		code, out, err := h.Exec(ctx, "redis-server", "--port", "6380", "--daemonize", "yes",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes-6380.conf",
			"--cluster-node-timeout", "2000", "--protected-mode", "no", "--dir", "/tmp",
			"--appendonly", "yes", "--repl-diskless-sync-delay", "0", "--logfile", "/tmp/redis-6380.log")
		if err != nil || code != 0 {
			t.Fatalf("second redis-server in %s: exit %d, %v: %s", h.Addr, code, err, out)
		}
		second := h.IP.String() + ":6380"
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		err = redistest.WaitPing(wctx, second)
		wcancel()
		if err != nil {
			t.Fatalf("second node %s: %v", second, err)
		}
		firsts, seconds = append(firsts, h.Addr), append(seconds, second)
	}
	addrs := append(firsts, seconds...)
	t.Logf("nodes, port by port: %v", addrs)
	mustRun(t, t.TempDir(), append([]string{"create"}, append(addrs, "--replicas", "1")...)...)
	requirePlanned(ctx, t, addrs[0], specNodes(t, addrs), 1)
	mustRun(t, t.TempDir(), "verify", "--addr", addrs[0])
}

// externalSpec writes a runtime: external spec for the containers (nodes
// as {host, port} mappings) into a temp dir, registering `down --purge`.
func externalSpec(t *testing.T, nodes []*containers.Node, replicas int) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "name: ext\nruntime: external\nreplicas: %d\ndir: ./state\nnodes:\n", replicas)
	for _, n := range nodes {
		fmt.Fprintf(&b, "  - {host: %s, port: %d}\n", n.IP, n.Port)
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if r := rcluster(t, dir, "down", "--purge"); r.code != 0 {
			t.Errorf("cleanup: down --purge exit %d: %s", r.code, r.stderr)
		}
	})
	return dir
}

// verifyFailsNaming runs verify and requires exit 1 with addr named in a
// failed check.
func verifyFailsNaming(t *testing.T, dir, addr string) {
	t.Helper()
	r := rcluster(t, dir, "verify", "--json")
	if r.code != 1 {
		t.Fatalf("verify: exit %d, want 1", r.code)
	}
	var rep struct {
		OK     bool `json:"ok"`
		Checks []struct {
			Name   string `json:"name"`
			OK     bool   `json:"ok"`
			Detail string `json:"detail"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, r.stdout)
	}
	for _, c := range rep.Checks {
		if !c.OK && strings.Contains(c.Detail, addr) {
			t.Logf("verify names %s: %s: %s", addr, c.Name, c.Detail)
			return
		}
	}
	t.Fatalf("no failed verify check names %s:\n%s", addr, r.stdout)
}

// TestExternalSpecFaults: `up` with a runtime: external spec forms the
// cluster on six containers; status and verify work on it. A stopped master
// container is replaced by its replica with every slot served, verify fails
// naming it, and once started again it rejoins as a replica and `verify
// --wait` passes. A container cut from the network is named by verify and
// `verify --wait` passes after it is reconnected. down leaves the
// containers running.
func TestExternalSpecFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	containers.RequireDocker(t)
	nw := containers.NewNetwork(ctx, t)
	nodes := containers.StartRedisNodes(ctx, t, nw, 6)
	addrs := containers.Addrs(nodes)
	dir := externalSpec(t, nodes, 1)

	_, took := timed(t, dir, "up")
	t.Logf("up (runtime external, 6 containers) took %v", took.Round(time.Millisecond))
	requirePlanned(ctx, t, addrs[0], specNodes(t, addrs), 1)
	mustRun(t, dir, "verify")
	if again, _ := timed(t, dir, "up"); !strings.Contains(again.stderr, "already up") {
		t.Errorf("second up is not a no-op:\n%s", again.stderr)
	}
	roles := map[string]int{}
	for i, n := range statusNodes(t, dir) {
		if n.Addr != addrs[i] || !n.Running {
			t.Errorf("status node %d: %+v, want %s running", i, n, addrs[i])
		}
		roles[n.Role]++
	}
	if roles["master"] != 3 || roles["replica"] != 3 {
		t.Errorf("status roles %v", roles)
	}
	cc := redisconn.Options{}.Cluster(addrs)
	defer cc.Close()
	writeKeys(ctx, t, cc, 3, true)

	// A master's container stops.
	m, r, o := pickMasterWithReplica(ctx, t, addrs[0], 3)
	victim := nodeAt(t, nodes, m.Addr)
	stopped := time.Now()
	if err := victim.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	survivors := without(addrs, m.Addr)
	took = eventually(ctx, t, 30*time.Second, "replica promoted, every slot served", func(ctx context.Context) error {
		v, err := view(ctx, o.Addr)
		if err != nil {
			return err
		}
		if p, _ := byAddr(v, r.Addr); !p.has("master") || len(p.Slots) == 0 {
			return fmt.Errorf("replica %s not promoted yet: %v", r.Addr, p.Flags)
		}
		return clusterOK(ctx, survivors)
	})
	t.Logf("master %s stopped: replica %s promoted and all slots served %v after the stop", m.Addr, r.Addr, took.Round(time.Millisecond))
	fresh := redisconn.Options{}.Cluster(survivors)
	defer fresh.Close()
	eventually(ctx, t, 20*time.Second, "keys readable after failover", func(ctx context.Context) error {
		return readKeys(ctx, fresh)
	})
	verifyFailsNaming(t, dir, m.Addr)

	if err := victim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	_, took = timed(t, dir, "verify", "--wait", "60s")
	t.Logf("old master started again: verify --wait passed %v later (%v after the stop)",
		took.Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond))
	v, err := view(ctx, o.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if old, _ := byAddr(v, m.Addr); !old.has("slave") || old.MasterID != r.ID {
		t.Errorf("old master %s after rejoin: %v replicating %q, want a replica of %s", m.Addr, old.Flags, old.MasterID, r.Addr)
	}

	// A partition: one container is cut from the network.
	cut := nodeAt(t, nodes, addrs[len(addrs)-1])
	if err := cut.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	verifyFailsNaming(t, dir, cut.Addr)
	if err := cut.Reconnect(ctx); err != nil {
		t.Fatal(err)
	}
	_, took = timed(t, dir, "verify", "--wait", "60s")
	t.Logf("partition of %s healed: verify --wait passed %v after reconnect", cut.Addr, took.Round(time.Millisecond))

	// down leaves what rcluster did not start.
	down := mustRun(t, dir, "down")
	if !strings.Contains(down.stderr, "leaves them running") {
		t.Errorf("down on runtime external did not say it leaves the nodes:\n%s", down.stderr)
	}
	for _, a := range addrs {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		err := redistest.WaitPing(pctx, a)
		pcancel()
		if err != nil {
			t.Errorf("node %s after down: %v", a, err)
		}
	}
	if err := clusterOK(ctx, addrs); err != nil {
		t.Errorf("cluster after down: %v", err)
	}
}
