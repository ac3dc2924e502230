package dockerrt

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/rcluster/rcluster/e2e/containers"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

// These tests run real containers of the local image (built by `make
// image` when missing). They are skipped with -short, and without a Docker
// engine except under CI=true, where that fails them (containers.RequireDocker).

// dockerRuntime returns a runtime for a fresh 3-node runtime: docker spec on
// a free port block, its configs written and no container started. At
// cleanup, even after a failure, every container of the spec's state dir is
// stopped and removed, and any that survives fails the test.
func dockerRuntime(t *testing.T) (*Runtime, []spec.Node) {
	t.Helper()
	return runtimeOf(t, "", t.TempDir())
}

// runtimeOf is dockerRuntime with extra spec lines, the spec in dir. At
// cleanup the state dir's networks (network: bridge) must be gone too:
// any left fails the test and is removed.
func runtimeOf(t *testing.T, extra, dir string) (*Runtime, []spec.Node) {
	t.Helper()
	containers.RequireDocker(t)
	containers.EnsureImage(t, containers.DefaultImage)
	base := redistest.PortBlock(t, 3)
	s, err := spec.Parse(fmt.Appendf(nil, "name: dk\nruntime: docker\nimage: %s\nports: %d-%d\ndir: state\n%s",
		containers.DefaultImage, base, base+2, extra), filepath.Join(dir, "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := New(ctx, s, Options{Conn: redisconn.Options{Timeout: 300 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer r.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := r.Stop(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		left, err := r.owned(ctx)
		if err != nil {
			t.Errorf("leak check: %v", err)
		}
		for _, c := range left {
			t.Errorf("leak: container %v survived the test; removing it", c.Names)
			_ = r.remove(ctx, c.ID, c.ID, true)
		}
		for _, n := range stateNetworks(ctx, t, r) {
			t.Errorf("leak: network %s survived the test; removing it", n.Name)
			_, _ = r.cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
		}
	})
	if err := r.WriteConfigs(); err != nil {
		t.Fatal(err)
	}
	return r, s.Nodes()
}

// stateNetworks lists the networks labelled with r's state dir.
func stateNetworks(ctx context.Context, t *testing.T, r *Runtime) []network.Summary {
	t.Helper()
	f := make(client.Filters).Add("label", LabelDir+"="+r.Spec.Dir)
	res, err := r.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		t.Fatalf("list networks of %s: %v", r.Spec.Dir, err)
	}
	return res.Items
}

// state inspects node n's container; it must exist.
func state(ctx context.Context, t *testing.T, r *Runtime, n spec.Node) (id string, st container.State) {
	t.Helper()
	c, found, err := r.nodeContainer(ctx, n)
	if err != nil || !found {
		t.Fatalf("container of %s: found %v, %v", n, found, err)
	}
	return c.ID, *c.State
}

func pingErr(ctx context.Context, n spec.Node) error {
	return ping(ctx, n, redisconn.Options{Timeout: 300 * time.Millisecond})
}

func myID(ctx context.Context, t *testing.T, n spec.Node) string {
	t.Helper()
	c := redisconn.Options{}.Node(n.Addr())
	defer c.Close()
	id, err := c.ClusterMyID(ctx).Result()
	if err != nil || id == "" {
		t.Fatalf("CLUSTER MYID on %s: %q, %v", n, id, err)
	}
	return id
}

// TestKillAndStartNodeDocker: StartNode creates a missing container; Kill
// leaves it exited and not answering (twice is fine); StartNode starts the
// same container again, with the node's identity; a paused node can be
// killed too.
func TestKillAndStartNodeDocker(t *testing.T) {
	r, nodes := dockerRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := nodes[0]

	if err := r.StartNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	id, _ := state(ctx, t, r, n)
	nodeID := myID(ctx, t, n)

	start := time.Now()
	if err := r.Kill(ctx, n); err != nil {
		t.Fatal(err)
	}
	t.Logf("kill took %v", time.Since(start).Round(time.Millisecond))
	if _, st := state(ctx, t, r, n); st.Running || st.ExitCode != 137 {
		t.Fatalf("after Kill: running %v, exit code %d; want exited by SIGKILL (137)", st.Running, st.ExitCode)
	}
	if err := pingErr(ctx, n); err == nil {
		t.Fatalf("killed node %s answers PING", n)
	}
	if err := r.Kill(ctx, n); err != nil {
		t.Fatalf("Kill of a killed node: %v", err)
	}
	if res, err := r.StopNode(ctx, n); err != nil || res.Action != "not running" {
		t.Fatalf("StopNode of a killed node: %+v, %v; want action \"not running\"", res, err)
	}

	start = time.Now()
	if err := r.StartNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	t.Logf("start of the killed container took %v", time.Since(start).Round(time.Millisecond))
	if err := pingErr(ctx, n); err != nil {
		t.Fatalf("after StartNode: %v", err)
	}
	if again, st := state(ctx, t, r, n); again != id || !st.Running {
		t.Fatalf("after StartNode: container %s running %v; want the same container %s running", again, st.Running, id)
	}
	if got := myID(ctx, t, n); got != nodeID {
		t.Fatalf("node id after restart %s, want %s (nodes.conf kept)", got, nodeID)
	}

	// A hung node can be killed too.
	if err := r.Pause(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := r.Kill(ctx, n); err != nil {
		t.Fatalf("Kill of a paused node: %v", err)
	}
	if _, st := state(ctx, t, r, n); st.Running || st.Paused {
		t.Fatalf("after Kill of a paused node: running %v, paused %v", st.Running, st.Paused)
	}
}

// TestStopNodeKeepsContainerAndDataDocker: StopNode shuts the node down
// with SHUTDOWN, keeps its container, and StartNode brings back the same
// node; StartNode on a running node only waits.
func TestStopNodeKeepsContainerAndDataDocker(t *testing.T) {
	r, nodes := dockerRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := nodes[1]
	if err := r.Start(ctx, []spec.Node{n}); err != nil {
		t.Fatal(err)
	}
	id, _ := state(ctx, t, r, n)
	nodeID := myID(ctx, t, n)

	res, err := r.StopNode(ctx, n)
	if err != nil || res.Action != "shutdown" || res.Addr != n.Addr() {
		t.Fatalf("StopNode: %+v, %v; want a SHUTDOWN of %s", res, err, n)
	}
	if again, st := state(ctx, t, r, n); again != id || st.Running || st.ExitCode != 0 {
		t.Fatalf("after StopNode: container %s running %v exit %d; want %s kept, exited 0", again, st.Running, st.ExitCode, id)
	}
	if err := r.StartNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := r.StartNode(ctx, n); err != nil {
		t.Fatalf("StartNode of a running node: %v", err)
	}
	if again, _ := state(ctx, t, r, n); again != id {
		t.Fatalf("StartNode made container %s, want %s started again", again, id)
	}
	if got := myID(ctx, t, n); got != nodeID {
		t.Fatalf("node id after stop and start %s, want %s", got, nodeID)
	}
}

// TestPauseUnpauseDocker: a paused node accepts TCP but never answers, and
// Inspect says it is paused; StartNode refuses it; Unpause returns with the
// node answering; StopNode of a paused node still shuts it down gracefully.
func TestPauseUnpauseDocker(t *testing.T) {
	r, nodes := dockerRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := nodes[2]
	if err := r.Pause(ctx, n); err == nil || !strings.Contains(err.Error(), "no container") {
		t.Fatalf("Pause without a container: %v", err)
	}
	if err := r.Start(ctx, []spec.Node{n}); err != nil {
		t.Fatal(err)
	}

	if err := r.Pause(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := r.Pause(ctx, n); err != nil {
		t.Fatalf("Pause of a paused node: %v", err)
	}
	conn, err := net.DialTimeout("tcp", n.Addr(), time.Second)
	if err != nil {
		t.Fatalf("paused node %s refuses TCP: %v", n, err)
	}
	conn.Close()
	if err := pingErr(ctx, n); err == nil {
		t.Fatalf("paused node %s answered PING", n)
	}
	sts, err := r.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := sts[2]; !st.Running || !st.Paused || st.Responding || !strings.Contains(st.Detail, "is paused") {
		t.Fatalf("Inspect of the paused node: %+v", st)
	}
	if err := r.StartNode(ctx, n); err == nil || !strings.Contains(err.Error(), "is paused") {
		t.Fatalf("StartNode of a paused node: %v, want a refusal", err)
	}

	if err := r.Unpause(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := pingErr(ctx, n); err != nil {
		t.Fatalf("after Unpause: %v", err)
	}

	if err := r.Pause(ctx, n); err != nil {
		t.Fatal(err)
	}
	if res, err := r.StopNode(ctx, n); err != nil || res.Action != "shutdown" {
		t.Fatalf("StopNode of a paused node: %+v, %v; want a SHUTDOWN", res, err)
	}
	if _, st := state(ctx, t, r, n); st.Running {
		t.Fatal("still running after StopNode")
	}
	if err := r.Unpause(ctx, n); err == nil || !strings.Contains(err.Error(), "is exited") {
		t.Fatalf("Unpause of a stopped node: %v", err)
	}
}

// TestNodeOpsLeaveForeignContainersAlone: a container that has a node's
// container name but not the spec's labels is refused by every operation,
// and neither Start nor Remove deletes it.
func TestNodeOpsLeaveForeignContainersAlone(t *testing.T) {
	r, nodes := dockerRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := nodes[0]
	name := ContainerName(r.Spec, n.Port)
	created, err := r.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:   name,
		Config: &container.Config{Image: containers.DefaultImage, Labels: map[string]string{LabelDir: "/elsewhere"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := r.cli.ContainerRemove(ctx, created.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Errorf("remove the test's container %s: %v", name, err)
		}
	})

	ops := map[string]func() error{
		"Kill":      func() error { return r.Kill(ctx, n) },
		"StopNode":  func() error { _, err := r.StopNode(ctx, n); return err },
		"StartNode": func() error { return r.StartNode(ctx, n) },
		"Pause":     func() error { return r.Pause(ctx, n) },
		"Unpause":   func() error { return r.Unpause(ctx, n) },
		"Start":     func() error { return r.Start(ctx, []spec.Node{n}) },
	}
	for op, f := range ops {
		if err := f(); err == nil || !strings.Contains(err.Error(), "is not this cluster's") || !strings.Contains(err.Error(), n.Addr()) {
			t.Errorf("%s on a foreign container: %v; want a refusal naming %s", op, err, n)
		}
	}
	if err := r.Remove(ctx, []spec.Node{n}); err != nil {
		t.Errorf("Remove: %v", err)
	}
	res, err := r.cli.ContainerInspect(ctx, created.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("the foreign container is gone: %v", err)
	}
	if res.Container.State.Status != container.StateCreated {
		t.Errorf("the foreign container is %s, want created (never started)", res.Container.State.Status)
	}
}
