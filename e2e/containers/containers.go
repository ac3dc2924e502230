// Package containers runs Redis nodes in Docker containers for rcluster's
// e2e tests, each on its own IP on a user-defined bridge network, so a
// cluster spans several "hosts". It is built on testcontainers-go and works
// without any registry: the image is built locally by scripts/build-image.sh.
//
// Ryuk (testcontainers' reaper) needs an image that cannot be pulled here, so
// the first helper called in a test (RequireDocker, NewNetwork) sets
// TESTCONTAINERS_RYUK_DISABLED=true when it is unset, before any
// testcontainers call: testcontainers reads its configuration once per
// process, so call one of them before touching testcontainers directly.
// Without Ryuk, every container and network is removed in t.Cleanup, and each
// test that used the helpers fails if anything it created survives.
//
// Typical use:
//
//	containers.RequireDocker(t)
//	nw := containers.NewNetwork(ctx, t)
//	nodes := containers.StartRedisNodes(ctx, t, nw, 6)
//	// nodes[i].Addr is "<ip>:6379", reachable from the host.
package containers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

const (
	// DefaultImage is the image scripts/build-image.sh builds.
	DefaultImage = "rcluster-redis:local"
	// Label marks every container and network these helpers create, next to
	// testcontainers' own org.testcontainers labels.
	Label = "rcluster.e2e"
	// TestLabel holds a per-test id; the leak check looks for it.
	TestLabel = "rcluster.e2e.test"
	// RedisPort is the client port inside every container (bus port 16379).
	RedisPort = 6379

	ryukEnv = "TESTCONTAINERS_RYUK_DISABLED"
)

var (
	dockerOnce sync.Once
	dockerCli  *testcontainers.DockerClient
	dockerErr  error

	// tests maps a testing.TB to its per-test label value; the leak check is
	// registered once per test, when the first helper runs.
	tests   sync.Map
	testSeq struct {
		sync.Mutex
		n int
	}
)

// disableRyuk sets TESTCONTAINERS_RYUK_DISABLED=true unless the caller set
// it. It must run before the first testcontainers call of the process.
func disableRyuk() {
	if _, ok := os.LookupEnv(ryukEnv); !ok {
		os.Setenv(ryukEnv, "true")
	}
}

// dockerClient returns the process-wide Docker client testcontainers-go
// builds (same host detection as the containers themselves).
func dockerClient(ctx context.Context) (*testcontainers.DockerClient, error) {
	disableRyuk()
	dockerOnce.Do(func() {
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		dockerCli, dockerErr = testcontainers.NewDockerClientWithOpts(ctx)
		if dockerErr == nil {
			_, dockerErr = dockerCli.Ping(ctx, client.PingOptions{})
		}
	})
	return dockerCli, dockerErr
}

// RequireDocker skips the test when no Docker engine answers (and under
// -short), except under CI=true, where a missing engine fails the test. It
// sets TESTCONTAINERS_RYUK_DISABLED=true if unset (see the package doc) and
// registers the leak check: at the end of the test, any container or network
// the helpers created for it that still exists fails the test (and is
// removed). Call it first in every Docker test.
func RequireDocker(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e Docker test: skipped with -short")
	}
	if v := os.Getenv(ryukEnv); v != "" && v != "true" {
		t.Logf("warning: %s=%q: Ryuk needs an image that cannot be pulled here; use true", ryukEnv, v)
	}
	if _, err := dockerClient(context.Background()); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no Docker engine (CI=true, so this fails instead of skipping): %v", err)
		}
		t.Skipf("no Docker engine reachable, skipping: %v", err)
	}
	testID(t)
}

// testID returns the test's label value, registering the leak check the
// first time it is called for t.
func testID(t testing.TB) string {
	if v, ok := tests.Load(t); ok {
		return v.(string)
	}
	testSeq.Lock()
	testSeq.n++
	id := fmt.Sprintf("%s-%d-%d", testcontainers.SessionID()[:12], os.Getpid(), testSeq.n)
	testSeq.Unlock()
	if v, loaded := tests.LoadOrStore(t, id); loaded {
		return v.(string)
	}
	// Registered before anything is created, so it runs after every other
	// cleanup of the test.
	t.Cleanup(func() {
		defer tests.Delete(t)
		checkLeaks(t, id)
	})
	return id
}

func checkLeaks(t testing.TB, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := dockerClient(ctx)
	if err != nil {
		t.Errorf("leak check: %v", err)
		return
	}
	f := make(client.Filters).Add("label", TestLabel+"="+id)
	cs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		t.Errorf("leak check: list containers: %v", err)
		return
	}
	for _, c := range cs.Items {
		t.Errorf("leak: container %s (%v) survived the test; removing it", c.ID[:12], c.Names)
		_, _ = cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	}
	ns, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		t.Errorf("leak check: list networks: %v", err)
		return
	}
	for _, n := range ns.Items {
		t.Errorf("leak: network %s (%s) survived the test; removing it", n.ID[:12], n.Name)
		_, _ = cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
	}
	// Containers of other tests or processes may legitimately be running;
	// only report them.
	if all, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", "org.testcontainers=true")}); err == nil && len(all.Items) > 0 {
		t.Logf("note: %d org.testcontainers containers exist on this engine (other tests or processes)", len(all.Items))
	}
}

// Leftovers lists the IDs of containers and networks labelled rcluster.e2e
// on the engine, from any test or process. A TestMain can call it after
// m.Run to prove the run cleaned up after itself.
func Leftovers(ctx context.Context) (containerIDs, networkIDs []string, err error) {
	cli, err := dockerClient(ctx)
	if err != nil {
		return nil, nil, err
	}
	f := make(client.Filters).Add("label", Label+"=true")
	cs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, nil, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range cs.Items {
		containerIDs = append(containerIDs, c.ID)
	}
	ns, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return nil, nil, fmt.Errorf("list networks: %w", err)
	}
	for _, n := range ns.Items {
		networkIDs = append(networkIDs, n.ID)
	}
	return containerIDs, networkIDs, nil
}

var imageMu sync.Mutex

// EnsureImage makes sure image name exists locally, running
// scripts/build-image.sh (found from the repository root, the first parent
// directory holding go.mod) with IMAGE=name when it does not. Nothing is ever
// pulled. The test fails when the build fails.
func EnsureImage(t testing.TB, name string) {
	t.Helper()
	RequireDocker(t)
	imageMu.Lock()
	defer imageMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cli, err := dockerClient(ctx)
	if err != nil {
		t.Fatalf("ensure image %s: %v", name, err)
	}
	imgs, err := cli.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("reference", name)})
	if err != nil {
		t.Fatalf("ensure image %s: list images: %v", name, err)
	}
	if len(imgs.Items) > 0 {
		return
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatalf("ensure image %s: %v", name, err)
	}
	script := filepath.Join(root, "scripts", "build-image.sh")
	start := time.Now()
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Env = append(os.Environ(), "IMAGE="+name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ensure image %s: %s: %v\n%s", name, script, err, out)
	}
	t.Logf("built image %s in %v", name, time.Since(start).Round(time.Millisecond))
}

// RepoRoot returns the first directory, from the working directory upwards,
// that holds a go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("repo root: %w", err)
	}
	for range 64 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("repo root: %w", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("repo root: no go.mod above the working directory")
}
