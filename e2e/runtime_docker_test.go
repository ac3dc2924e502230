package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
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
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
	"github.com/rcluster/rcluster/internal/topology"
)

// These tests drive `runtime: docker`: rcluster itself runs every node as a
// container of the local image, with host networking, and must leave no
// container behind.

// dockerAPI returns a Docker client for assertions, closed at cleanup.
func dockerAPI(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// runtimeContainers lists the containers rcluster created for state dir
// dir (label rcluster.dir), in any state.
func runtimeContainers(ctx context.Context, t *testing.T, cli *client.Client, dir string) map[string]string {
	t.Helper()
	f := make(client.Filters).Add("label", dockerrt.LabelDir+"="+dir)
	res, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatalf("list containers of %s: %v", dir, err)
	}
	out := map[string]string{} // port label -> state
	for _, c := range res.Items {
		out[c.Labels[dockerrt.LabelPort]] = string(c.State)
	}
	return out
}

// requireNoRuntimeContainers registers, before anything else of the test's
// cluster, a final check that no container of state dir dir survives; any
// that does fails the test and is removed.
func requireNoRuntimeContainers(t *testing.T, cli *client.Client, dir string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		f := make(client.Filters).Add("label", dockerrt.LabelDir+"="+dir)
		res, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
		if err != nil {
			t.Errorf("leak check: %v", err)
			return
		}
		for _, c := range res.Items {
			t.Errorf("leak: container %v of %s survived the test; removing it", c.Names, dir)
			_, _ = cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
		}
	})
}

// dockerSpec writes a runtime: docker spec for n nodes on a free port block
// and returns the spec dir, the ports and the state dir.
func dockerSpec(t *testing.T, n, replicas int, extra ...string) (string, []int, string) {
	t.Helper()
	containers.RequireDocker(t)
	containers.EnsureImage(t, containers.DefaultImage)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	// Registered before writeSpecIn's `down --purge`, so it runs after it.
	requireNoRuntimeContainers(t, dockerAPI(t), state)
	dir, ports := writeSpecIn(t, dir, n, replicas, "runtime: docker\nimage: "+containers.DefaultImage+"\n"+strings.Join(extra, ""))
	return dir, ports, state
}

// TestDockerRuntimeLifecycle: runtime: docker with 6 nodes and 1 replica
// each goes up, the host follows MOVED to every node with redis-cli -c,
// verify passes, down keeps the data, up brings it back, and down --purge
// leaves no container and no state.
func TestDockerRuntimeLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir, ports, state := dockerSpec(t, 6, 1)
	cli := dockerAPI(t)
	redisCLI := redistest.RequireBinary(t, "redis-cli")

	_, took := timed(t, dir, "up")
	t.Logf("up (6 containers, fresh) took %v", took.Round(time.Millisecond))
	got := runtimeContainers(ctx, t, cli, state)
	if len(got) != 6 {
		t.Fatalf("containers after up: %v, want 6 running", got)
	}
	for _, p := range ports {
		if got[strconv.Itoa(p)] != "running" {
			t.Errorf("container of port %d: %q, want running", p, got[strconv.Itoa(p)])
		}
	}
	clusterCheck(t, ports[0])
	mustRun(t, dir, "verify")

	// Every master's slots, through redis-cli -c from the host: a key per
	// master, SET through the first node and GET through the last, so each
	// command that is not local is redirected to an announced address.
	masters := map[string][2]int{} // addr -> slot range
	v, err := view(ctx, addr(ports[0]))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range v {
		if n.has("master") && len(n.Slots) == 1 {
			lo, hi, _ := strings.Cut(n.Slots[0], "-")
			a, _ := strconv.Atoi(lo)
			b, _ := strconv.Atoi(hi)
			masters[n.Addr] = [2]int{a, b}
		}
		if host, _, _ := strings.Cut(n.Addr, ":"); host != "127.0.0.1" {
			t.Errorf("node %s announces %s, not the spec host", n.ID, n.Addr)
		}
	}
	if len(masters) != 3 {
		t.Fatalf("masters with one slot range each: %v", masters)
	}
	for maddr, r := range masters {
		key := "{" + topology.KeyForSlot(r[0]) + "}:docker"
		set := exec.CommandContext(ctx, redisCLI, "-c", "-p", strconv.Itoa(ports[0]), "SET", key, maddr)
		if out, err := set.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "OK" {
			t.Fatalf("redis-cli -c -p %d SET %s: %v %q", ports[0], key, err, out)
		}
		get := exec.CommandContext(ctx, redisCLI, "-c", "-p", strconv.Itoa(ports[5]), "GET", key)
		if out, err := get.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != maddr {
			t.Fatalf("redis-cli -c -p %d GET %s: %v %q, want %q", ports[5], key, err, out, maddr)
		}
		// Without -c the redirect itself is visible: it names the master
		// at the host address the client used.
		raw, _ := exec.CommandContext(ctx, redisCLI, "-p", strconv.Itoa(ports[5]), "GET", key).CombinedOutput()
		if s := strings.TrimSpace(string(raw)); s != maddr && !strings.Contains(s, "MOVED") {
			t.Errorf("GET %s on a non-owner: %q, want MOVED to %s", key, s, maddr)
		} else if strings.Contains(s, "MOVED") && !strings.HasSuffix(s, maddr) {
			t.Errorf("GET %s: %q does not redirect to %s", key, s, maddr)
		}
		t.Logf("slots %d-%d: SET via :%d, GET via :%d, owner %s", r[0], r[1], ports[0], ports[5], maddr)
	}

	roles := map[string]int{}
	for _, n := range statusNodes(t, dir) {
		if !n.Running || n.Pid <= 0 {
			t.Errorf("status: %s running=%v pid=%d", n.Addr, n.Running, n.Pid)
		}
		roles[n.Role]++
	}
	if roles["master"] != 3 || roles["replica"] != 3 {
		t.Errorf("status roles %v, want 3 masters and 3 replicas", roles)
	}

	again, _ := timed(t, dir, "up")
	if !strings.Contains(again.stderr, "already up") {
		t.Errorf("second up did not say the cluster was already up:\n%s", again.stderr)
	}

	// A container stopped behind rcluster's back: up replaces it, and the
	// node rejoins from its nodes.conf.
	victim := dockerrt.ContainerName(&spec.Spec{Name: "e2e", Dir: state}, ports[4])
	zero := 0
	if _, err := cli.ContainerStop(ctx, victim, client.ContainerStopOptions{Timeout: &zero}); err != nil {
		t.Fatalf("docker stop %s: %v", victim, err)
	}
	if got := runtimeContainers(ctx, t, cli, state)[strconv.Itoa(ports[4])]; got != "exited" {
		t.Fatalf("container %s after stop: %q", victim, got)
	}
	_, took = timed(t, dir, "up")
	t.Logf("up with one container stopped took %v", took.Round(time.Millisecond))
	mustRun(t, dir, "verify")

	_, took = timed(t, dir, "down")
	t.Logf("down (6 containers) took %v", took.Round(time.Millisecond))
	if got := runtimeContainers(ctx, t, cli, state); len(got) != 0 {
		t.Errorf("containers after down: %v, want none", got)
	}
	assertNothingLeft(t, ports)
	if _, err := os.Stat(filepath.Join(state, "db", "redis_"+strconv.Itoa(ports[0]), "nodes-"+strconv.Itoa(ports[0])+".conf")); err != nil {
		t.Errorf("down lost the data: %v", err)
	}
	if r := rcluster(t, dir, "verify"); r.code != 1 {
		t.Errorf("verify on a stopped cluster: exit %d, want 1", r.code)
	}

	_, took = timed(t, dir, "up")
	t.Logf("up (6 containers, from saved state) took %v", took.Round(time.Millisecond))
	mustRun(t, dir, "verify")
	cc := redisconn.Options{}.Cluster([]string{addr(ports[0])})
	defer cc.Close()
	for maddr, r := range masters {
		key := "{" + topology.KeyForSlot(r[0]) + "}:docker"
		if got, err := cc.Get(ctx, key).Result(); err != nil || got != maddr {
			t.Errorf("after restart GET %s = %q, %v; want %q", key, got, err, maddr)
		}
	}

	_, took = timed(t, dir, "down", "--purge")
	t.Logf("down --purge took %v", took.Round(time.Millisecond))
	if got := runtimeContainers(ctx, t, cli, state); len(got) != 0 {
		t.Errorf("containers after down --purge: %v", got)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state dir still exists after down --purge: %v", err)
	}
}

// TestDockerRuntimeMissingImage: an image that is neither present nor
// pullable fails up clearly, starts nothing, and leaves no container.
func TestDockerRuntimeMissingImage(t *testing.T) {
	containers.RequireDocker(t)
	cli := dockerAPI(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	requireNoRuntimeContainers(t, cli, state)
	_, _ = writeSpecIn(t, dir, 3, 0, "runtime: docker\nimage: rcluster-e2e-no-such-image:never\n")
	r := rcluster(t, dir, "up", "--timeout", "30s")
	if r.code != 1 {
		t.Fatalf("up with a missing image: exit %d, want 1", r.code)
	}
	if !strings.Contains(r.stderr, "image rcluster-e2e-no-such-image:never is not present locally and pulling it failed") {
		t.Errorf("up with a missing image did not say so:\n%s", r.stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if got := runtimeContainers(ctx, t, cli, state); len(got) != 0 {
		t.Errorf("containers after a failed up: %v", got)
	}
}

// TestDockerRuntimePortInUse: a port already taken on the host is named
// before any container is created.
func TestDockerRuntimePortInUse(t *testing.T) {
	dir, ports, state := dockerSpec(t, 3, 0)
	cli := dockerAPI(t)
	l, err := net.Listen("tcp", addr(ports[1]))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := rcluster(t, dir, "up", "--timeout", "30s")
	if r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf("node 127.0.0.1:%d: port %d", ports[1], ports[1])) {
		t.Fatalf("up with port %d taken: exit %d, want 1 naming the port:\n%s", ports[1], r.code, r.stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if got := runtimeContainers(ctx, t, cli, state); len(got) != 0 {
		t.Errorf("containers after a failed up: %v", got)
	}
}

// TestDockerRuntimeTLSAndAuth: generated TLS material and a password reach
// the containers (certificates mounted at their host paths), and every
// command speaks TLS with the password to them.
func TestDockerRuntimeTLSAndAuth(t *testing.T) {
	redistest.Integration(t)
	dir, ports, _ := dockerSpec(t, 3, 0, "tls: {generate: true}\nauth: {password: docker-secret}\n")
	mustRun(t, dir, "up")
	mustRun(t, dir, "verify")
	st := mustRun(t, dir, "status")
	if strings.Contains(st.stdout+st.stderr, "docker-secret") {
		t.Errorf("status printed the password:\n%s", st.stdout)
	}
	// A plain TCP client is refused: the client port speaks TLS only.
	plain := redisconn.Options{Password: "docker-secret", Timeout: time.Second}.Node(addr(ports[0]))
	defer plain.Close()
	if err := plain.Ping(context.Background()).Err(); err == nil {
		t.Errorf("plain TCP PING to %s succeeded on a TLS cluster", addr(ports[0]))
	}
	mustRun(t, dir, "down", "--purge")
}

// TestDockerRuntimeRefusesNodeOfAnotherCluster: containers keep nodes.conf
// in the state dir like processes, and up applies the same membership
// checks before starting any container: a node whose nodes.conf belongs
// to another cluster is refused by name, nothing starts, nothing changes.
func TestDockerRuntimeRefusesNodeOfAnotherCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir, ports, state := dockerSpec(t, 3, 0)
	cli := dockerAPI(t)
	mustRun(t, dir, "up")
	mustRun(t, dir, "down")

	other, foreign, orig := plantForeignNodesConf(t, dir, ports[0])

	r := rcluster(t, dir, "up")
	if r.code != 1 {
		t.Fatalf("up with a foreign node: exit %d, want 1\n%s", r.code, r.stderr)
	}
	for _, want := range []string{addr(ports[0]) + " belongs to another cluster", other[1].Addr, "nothing was started"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("up's error lacks %q:\n%s", want, r.stderr)
		}
	}
	for p, st := range runtimeContainers(ctx, t, cli, state) {
		if st == "running" {
			t.Errorf("container of port %s runs after a refused up", p)
		}
	}
	if b, _ := os.ReadFile(nodesConf(dir, ports[0])); !bytes.Equal(b, foreign) {
		t.Error("the foreign nodes.conf was changed")
	}

	if err := os.WriteFile(nodesConf(dir, ports[0]), orig, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, dir, "up")
	mustRun(t, dir, "verify")
}
