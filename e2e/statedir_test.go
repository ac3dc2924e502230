package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

// These tests hold rcluster to "a purge removes what rcluster made and
// nothing else" on every runtime, and to one lifecycle for all of them:
// ls reads docker and external clusters truthfully, and a runtime switch
// while the old runtime's nodes run is refused.

// userFiles puts files of the user's into the state dir (before rcluster
// ever ran there, and one inside a dir rcluster also writes to) and
// returns a check that they are all still there, unchanged.
func userFiles(t *testing.T, state string) func(when string) {
	t.Helper()
	files := map[string]string{
		filepath.Join(state, "notes.txt"):        "my notes",
		filepath.Join(state, "log", "mine.log"):  "my log",
		filepath.Join(state, "keep", "deep.txt"): "deep",
	}
	for p, body := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return func(when string) {
		t.Helper()
		for p, body := range files {
			if b, err := os.ReadFile(p); err != nil || string(b) != body {
				t.Errorf("%s: the user's file %s is gone or changed: %q, %v", when, p, b, err)
			}
		}
	}
}

// assertPurged checks that rcluster's own files are gone from state.
func assertPurged(t *testing.T, state string) {
	t.Helper()
	for _, rel := range []string{"rcluster-state.json", "rcluster.lock", "conf", "db", "run"} {
		if _, err := os.Lstat(filepath.Join(state, rel)); !os.IsNotExist(err) {
			t.Errorf("down --purge left rcluster's %s in %s (%v)", rel, state, err)
		}
	}
	left, _ := filepath.Glob(filepath.Join(state, "log", "redis_*.log"))
	if len(left) > 0 {
		t.Errorf("down --purge left node logs: %v", left)
	}
}

// TestPurgeKeepsUserFiles: a state dir that already holds the user's files
// keeps every one of them across up, down, up and down --purge, while
// rcluster's own files go; and `dir: .` (the spec file's own directory)
// cannot be purged at all: exit 2, and the cluster still runs.
func TestPurgeKeepsUserFiles(t *testing.T) {
	dir, ports := writeSpec(t, 3, 0, "")
	state := stateDir(dir)
	check := userFiles(t, state)
	mustRun(t, dir, "up")
	mustRun(t, dir, "down")
	check("after down")
	mustRun(t, dir, "up")
	r := mustRun(t, dir, "down", "--purge")
	check("after down --purge")
	assertPurged(t, state)
	if !strings.Contains(r.stderr, "notes.txt") {
		t.Errorf("down --purge did not say what it kept:\n%s", r.stderr)
	}
	assertNothingLeft(t, ports)

	// dir: . is the spec's own directory.
	spec, err := os.ReadFile(filepath.Join(dir, "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(strings.Replace(string(spec), "dir: ./state", "dir: .", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, dir, "up")
	r = rcluster(t, dir, "down", "--purge")
	if r.code != 2 || !strings.Contains(r.stderr, "refusing to purge") || !strings.Contains(r.stderr, "spec file") {
		t.Errorf("down --purge with dir: . = exit %d, want 2 refusing:\n%s", r.code, r.stderr)
	}
	for _, n := range statusNodes(t, dir) {
		if !n.Running {
			t.Errorf("a refused purge stopped %s", n.Addr)
		}
	}
	mustRun(t, dir, "down")
	if _, err := os.Stat(filepath.Join(dir, "cluster.yaml")); err != nil {
		t.Errorf("the spec file is gone: %v", err)
	}
	// Back to dir: ./state for the cleanup's down --purge (t.TempDir
	// removes the rest).
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
}

// lsClusters is `rcluster ls --root root --json`.
func lsClusters(t *testing.T, dir, root string) []struct {
	Name, Runtime, State string
	Running, Nodes       int
	Detail               string
} {
	t.Helper()
	r := mustRun(t, dir, "ls", "--root", root, "--json")
	var out struct {
		Clusters []struct {
			Name, Runtime, State string
			Running, Nodes       int
			Detail               string
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, r.stdout)
	}
	return out.Clusters
}

// TestDockerRuntimeStateDirLsAndSwitch: on runtime docker, user files in
// the state dir survive up, down and down --purge; ls reports the running
// cluster as running (it used to say stopped: it looked for processes);
// and switching the spec to runtime process while the containers run is
// refused, naming them, with nothing started.
func TestDockerRuntimeStateDirLsAndSwitch(t *testing.T) {
	dir, ports, state := dockerSpec(t, 3, 0)
	check := userFiles(t, state)
	mustRun(t, dir, "up")

	ls := lsClusters(t, dir, dir)
	if len(ls) != 1 || ls[0].Runtime != "docker" || ls[0].State != "running" || ls[0].Running != 3 || ls[0].Nodes != 3 {
		t.Errorf("ls of a running docker cluster: %+v, want docker running 3/3", ls)
	}

	spec, err := os.ReadFile(filepath.Join(dir, "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	process := strings.NewReplacer("runtime: docker\n", "", "image: ", "# image: ").Replace(string(spec))
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(process), 0o644); err != nil {
		t.Fatal(err)
	}
	r := rcluster(t, dir, "up")
	if r.code != 1 || !strings.Contains(r.stderr, "runtime docker") || !strings.Contains(r.stderr, addr(ports[0])) ||
		!strings.Contains(r.stderr, "nothing was started") {
		t.Errorf("up switching docker -> process with containers running: exit %d\n%s", r.code, r.stderr)
	}
	if n := redisProcs(ports[0]); n != 1 {
		t.Errorf("%d redis-server processes on %d after the refused switch, want only the container's", n, ports[0])
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, dir, "verify")
	mustRun(t, dir, "down")
	check("after down")
	mustRun(t, dir, "down", "--purge")
	check("after down --purge")
	assertPurged(t, state)
}

// TestExternalRuntimeStateDirAndLs: runtime external on nodes the test
// runs itself: ls reports them running with the right count (it used to say
// "running, 0/0 nodes"), and down --purge keeps the user's files and leaves
// the nodes running.
func TestExternalRuntimeStateDirAndLs(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3)
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "name: ext\nruntime: external\nreplicas: 0\ndir: ./state\nnodes:\n")
	for _, n := range nodes {
		fmt.Fprintf(&b, "  - {host: 127.0.0.1, port: %d}\n", n.Port)
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	check := userFiles(t, stateDir(dir))
	mustRun(t, dir, "up")
	ls := lsClusters(t, dir, dir)
	if len(ls) != 1 || ls[0].Runtime != "external" || ls[0].State != "running" || ls[0].Running != 3 || ls[0].Nodes != 3 {
		t.Errorf("ls of a running external cluster: %+v, want external running 3/3", ls)
	}
	mustRun(t, dir, "down", "--purge")
	check("after down --purge")
	assertPurged(t, stateDir(dir))
	for _, n := range nodes {
		if err := redistest.WaitPing(ctxFor(t, 10*time.Second), n.Addr); err != nil {
			t.Errorf("down of an external cluster touched node %s: %v", n.Addr, err)
		}
	}
}
