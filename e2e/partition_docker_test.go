package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/rcluster/rcluster/e2e/containers"
	"github.com/rcluster/rcluster/internal/dockerrt"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

// bridgeSpec writes a runtime: docker, network: bridge spec of n nodes in
// a fresh dir whose derived subnet (no subnet: key) overlaps no existing
// Docker network, so tests side by side do not collide. It returns the
// spec dir, the parsed spec and the state dir. At cleanup `down --purge`
// runs, then no container and no network of the state dir may be left.
func bridgeSpec(t *testing.T, n, replicas int, extra string) (string, *spec.Spec, string) {
	t.Helper()
	containers.RequireDocker(t)
	containers.EnsureImage(t, containers.DefaultImage)
	cli := dockerAPI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nws, err := cli.NetworkList(ctx, client.NetworkListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		dir := t.TempDir()
		state := filepath.Join(dir, "state")
		sub := (&spec.Spec{Dir: state}).BridgeSubnet()
		free := true
		for _, nw := range nws.Items {
			for _, c := range nw.IPAM.Config {
				free = free && !c.Subnet.Overlaps(sub)
			}
		}
		if !free {
			continue
		}
		requireNoRuntimeContainers(t, cli, state)
		requireNoRuntimeNetworks(t, cli, state)
		base := redistest.PortBlock(t, n)
		yaml := fmt.Sprintf("name: e2e\nruntime: docker\nimage: %s\nnetwork: bridge\nports: \"%d-%d\"\nreplicas: %d\ndir: ./state\n%s",
			containers.DefaultImage, base, base+n-1, replicas, extra)
		path := filepath.Join(dir, "cluster.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := spec.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if r := rcluster(t, dir, "down", "--purge"); r.code != 0 {
				t.Errorf("cleanup: down --purge exit %d: %s", r.code, r.stderr)
			}
		})
		return dir, s, state
	}
	t.Fatal("no state dir with a free derived subnet in 20 tries")
	return "", nil, ""
}

// runtimeNetworks lists the networks rcluster created for state dir dir.
func runtimeNetworks(ctx context.Context, t *testing.T, cli *client.Client, dir string) []string {
	t.Helper()
	f := make(client.Filters).Add("label", dockerrt.LabelDir+"="+dir)
	res, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		t.Fatalf("list networks of %s: %v", dir, err)
	}
	var out []string
	for _, n := range res.Items {
		out = append(out, n.Name)
	}
	return out
}

// requireNoRuntimeNetworks registers a final check that no network of
// state dir dir survives; any that does fails the test and is removed.
func requireNoRuntimeNetworks(t *testing.T, cli *client.Client, dir string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, name := range runtimeNetworks(ctx, t, cli, dir) {
			t.Errorf("leak: network %s of %s survived the test; removing it", name, dir)
			_, _ = cli.NetworkRemove(ctx, name, client.NetworkRemoveOptions{})
		}
	})
}

// TestDockerBridgePartition: runtime: docker with network: bridge, 3
// masters and 3 replicas on their own container IPs. `rcluster node
// partition` cuts a master off the network: the surviving nodes agree its
// replica took over its slots; `rcluster node heal` reconnects it and it
// rejoins as a replica of the new master, and redis-cli --cluster check
// from the host passes on a container IP. `down --purge` leaves no
// container and no network.
func TestDockerBridgePartition(t *testing.T) {
	redisCLI := redistest.RequireBinary(t, "redis-cli")
	dir, s, state := bridgeSpec(t, 6, 1, "config:\n  cluster-node-timeout: 1000\n")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cli := dockerAPI(t)
	addrs := s.Addrs()

	_, took := timed(t, dir, "up")
	t.Logf("up (6 containers on %s, network %s) took %v", s.BridgeSubnet(), dockerrt.NetworkName(s), took.Round(time.Millisecond))
	if nws := runtimeNetworks(ctx, t, cli, state); len(nws) != 1 || nws[0] != dockerrt.NetworkName(s) {
		t.Fatalf("networks after up: %v, want [%s]", nws, dockerrt.NetworkName(s))
	}
	v, err := view(ctx, addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range v {
		if ap, err := netip.ParseAddrPort(n.Addr); err != nil || !s.BridgeSubnet().Contains(ap.Addr()) {
			t.Errorf("node %s announces %s, outside %s", n.ID, n.Addr, s.BridgeSubnet())
		}
	}
	mustRun(t, dir, "verify")

	// The spec's first node is a master; find its replica.
	master := addrs[0]
	me, _ := byAddr(v, master)
	var replica string
	for _, n := range v {
		if n.MasterID == me.ID {
			replica = n.Addr
		}
	}
	if !me.has("master") || len(me.Slots) == 0 || replica == "" {
		t.Fatalf("%s: flags %v slots %v replica %q; want a master with slots and a replica", master, me.Flags, me.Slots, replica)
	}
	survivors := without(addrs, master)

	start := time.Now()
	r, took := timed(t, dir, "node", "partition", strconv.Itoa(s.Ports[0]))
	t.Logf("node partition %s returned in %v: %s", master, took.Round(time.Millisecond), strings.TrimSpace(r.stderr))
	if !containerRuns(ctx, t, cli, state, s.Ports[0]) {
		t.Fatalf("the partitioned master's container does not run")
	}
	eventually(ctx, t, 30*time.Second, "survivors agree the replica took over", func(ctx context.Context) error {
		for _, a := range survivors {
			v, err := view(ctx, a)
			if err != nil {
				return err
			}
			newM, _ := byAddr(v, replica)
			old, _ := byAddr(v, master)
			if !newM.has("master") || strings.Join(newM.Slots, " ") != strings.Join(me.Slots, " ") {
				return fmt.Errorf("%s sees %s as %v with slots %v", a, replica, newM.Flags, newM.Slots)
			}
			if !old.has("fail") {
				return fmt.Errorf("%s sees the cut master %s as %v", a, master, old.Flags)
			}
		}
		return clusterOK(ctx, survivors)
	})
	t.Logf("MEASURED partition of master %s -> all 5 survivors agree replica %s owns slots %v: %v (cluster-node-timeout 1000)",
		master, replica, me.Slots, (time.Since(start)).Round(time.Millisecond))

	start = time.Now()
	_, took = timed(t, dir, "node", "heal", strconv.Itoa(s.Ports[0]))
	t.Logf("node heal %s returned in %v", master, took.Round(time.Millisecond))
	eventually(ctx, t, 30*time.Second, "old master rejoins as a replica", func(ctx context.Context) error {
		for _, a := range addrs {
			v, err := view(ctx, a)
			if err != nil {
				return err
			}
			newM, _ := byAddr(v, replica)
			old, _ := byAddr(v, master)
			if !old.has("slave") || old.MasterID != newM.ID || old.failing() {
				return fmt.Errorf("%s sees the old master %s as %v of %q", a, master, old.Flags, old.MasterID)
			}
		}
		return clusterOK(ctx, addrs)
	})
	t.Logf("MEASURED heal -> old master a replica of %s on every node: %v", replica, (time.Since(start)).Round(time.Millisecond))
	out, err := exec.CommandContext(ctx, redisCLI, "--cluster", "check", master).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "[OK] All 16384 slots covered.") || strings.Contains(string(out), "[ERR]") || strings.Contains(string(out), "[WARNING]") {
		t.Fatalf("redis-cli --cluster check %s: %v\n%s", master, err, out)
	}
	mustRun(t, dir, "verify")

	// up brings a changed cluster back to the spec's shape: a node cut
	// off is reconnected, and the cluster agrees it is healthy.
	mustRun(t, dir, "node", "partition", strconv.Itoa(s.Ports[5]))
	if r := rcluster(t, dir, "status"); r.code != 1 || !strings.Contains(r.stderr, "partitioned") {
		t.Errorf("status with a partitioned node: exit %d:\n%s", r.code, r.stderr)
	}
	if r := mustRun(t, dir, "up"); !strings.Contains(r.stderr, "Reconnecting partitioned node") {
		t.Errorf("up with a partitioned node did not reconnect it:\n%s", r.stderr)
	}
	mustRun(t, dir, "verify", "--wait", "20s")

	_, took = timed(t, dir, "down", "--purge")
	t.Logf("down --purge took %v", took.Round(time.Millisecond))
	if got := runtimeContainers(ctx, t, cli, state); len(got) != 0 {
		t.Errorf("containers after down --purge: %v", got)
	}
	if nws := runtimeNetworks(ctx, t, cli, state); len(nws) != 0 {
		t.Errorf("networks after down --purge: %v", nws)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state dir after down --purge: %v", err)
	}
}

// containerRuns reports whether node port's container of state dir dir runs.
func containerRuns(ctx context.Context, t *testing.T, cli *client.Client, dir string, port int) bool {
	t.Helper()
	return runtimeContainers(ctx, t, cli, dir)[strconv.Itoa(port)] == "running"
}
