package statedir

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rcluster/rcluster/internal/spec"
)

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func testSpec(dir string) *spec.Spec {
	return &spec.Spec{Name: "t", Host: "127.0.0.1", Ports: spec.Ports{7001, 7002, 7003}, Dir: dir}
}

// makeLayout creates what up and its nodes create for s.
func makeLayout(t *testing.T, s *spec.Spec) {
	t.Helper()
	for _, p := range s.Ports {
		write(t, s.ConfFile(p), "port x\n")
		write(t, s.PidFile(p), "1\n")
		write(t, s.LogFile(p), "log\n")
		write(t, filepath.Join(s.DataDir(p), "appendonlydir", "appendonly.aof.1.base.rdb"), "data")
		write(t, s.NodesFile(p), "nodes")
	}
	write(t, filepath.Join(s.Dir, LockFile), "1\n")
}

// The bug this package exists for: a spec whose dir already holds the
// user's files. Purge must remove rcluster's files and keep every one of
// the user's, including one inside a dir rcluster also writes to.
func TestPurgeKeepsFilesRclusterDidNotCreate(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "notes.txt"), "mine")
	write(t, filepath.Join(dir, "log", "mine.log"), "mine too")
	s := testSpec(dir)

	st := &State{Version: Version, Name: "t"}
	Claim(dir, st, NodeLayout(s))
	if slices.Contains(st.Created, ".") || slices.Contains(st.Created, "log") {
		t.Fatalf("claimed pre-existing paths: %v", st.Created)
	}
	if err := Write(dir, st); err != nil {
		t.Fatal(err)
	}
	makeLayout(t, s)

	res, err := Purge(dir, st, NodeLayout(s))
	if err != nil {
		t.Fatal(err)
	}
	for _, keep := range []string{"notes.txt", "log/mine.log"} {
		if b, err := os.ReadFile(filepath.Join(dir, keep)); err != nil || string(b) == "" {
			t.Errorf("user file %s lost: %v", keep, err)
		}
	}
	for _, gone := range []string{StateFile, LockFile, "conf", "run", "db", "log/redis_7001.log"} {
		if Exists(filepath.Join(dir, gone)) {
			t.Errorf("%s was not purged", gone)
		}
	}
	if res.DirRemoved || !slices.Equal(res.Kept, []string{"log/mine.log", "notes.txt"}) {
		t.Errorf("result = %+v, want the dir kept with exactly the user's two files", res)
	}
}

func TestPurgeRemovesDirItCreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := testSpec(dir)
	st := &State{Version: Version}
	Claim(dir, st, NodeLayout(s), ".")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	makeLayout(t, s)
	res, err := Purge(dir, st, NodeLayout(s))
	if err != nil || !res.DirRemoved || Exists(dir) {
		t.Fatalf("Purge = %+v, %v; dir exists: %v", res, err, Exists(dir))
	}
}

// A file the user put inside the state dir after up (rcluster did not
// create it) keeps the dir, even a dir rcluster created.
func TestPurgeKeepsDirHoldingLaterUserFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := testSpec(dir)
	st := &State{Version: Version}
	Claim(dir, st, NodeLayout(s), ".")
	makeLayout(t, s)
	write(t, filepath.Join(dir, "conf", "my-notes.md"), "x")
	res, err := Purge(dir, st, NodeLayout(s))
	if err != nil {
		t.Fatal(err)
	}
	if res.DirRemoved || !Exists(filepath.Join(dir, "conf", "my-notes.md")) || Exists(s.ConfFile(7001)) {
		t.Fatalf("Purge = %+v: want conf/my-notes.md kept, configs removed", res)
	}
}

// A version 1 state file (written by older rcluster, no record of what it
// created) purges the layout's paths only.
func TestPurgeLegacyStateRemovesOnlyLayout(t *testing.T) {
	dir := t.TempDir()
	s := testSpec(dir)
	makeLayout(t, s)
	write(t, Path(dir), `{"name":"t","host":"127.0.0.1","ports":[7001,7002,7003],"replicas":0}`)
	write(t, filepath.Join(dir, "notes.txt"), "mine")
	st, err := Read(dir)
	if err != nil || !st.Legacy() || !st.Formed || st.Runtime != "process" {
		t.Fatalf("Read = %+v, %v", st, err)
	}
	res, err := Purge(dir, st, NodeLayout(s))
	if err != nil || !Exists(filepath.Join(dir, "notes.txt")) || Exists(filepath.Join(dir, "db")) || res.DirRemoved {
		t.Fatalf("Purge = %+v, %v", res, err)
	}
}

// Claim on a legacy state upgrades it: what exists of the layout becomes
// recorded, so a later purge still removes it, and nothing else.
func TestClaimUpgradesLegacyState(t *testing.T) {
	dir := t.TempDir()
	s := testSpec(dir)
	makeLayout(t, s)
	write(t, Path(dir), `{"name":"t","host":"127.0.0.1","ports":[7001,7002,7003],"replicas":0}`)
	write(t, filepath.Join(dir, "notes.txt"), "mine")
	st, _ := Read(dir)
	if !Claim(dir, st, NodeLayout(s)) || st.Legacy() {
		t.Fatalf("Claim did not upgrade: %+v", st)
	}
	if !slices.Contains(st.Trees, "db/redis_7001") || slices.Contains(st.Created, "notes.txt") {
		t.Fatalf("created = %v, trees = %v", st.Created, st.Trees)
	}
	if err := Write(dir, st); err != nil {
		t.Fatal(err)
	}
	again, err := Read(dir)
	if err != nil || again.Version != Version || !slices.Equal(again.Created, st.Created) {
		t.Fatalf("round trip: %+v, %v", again, err)
	}
}

func TestCheckPurgeTarget(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip("no home directory")
	}
	specDir := t.TempDir()
	for _, tc := range []struct {
		dir  string
		want bool
	}{
		{"/", false},
		{home, false},
		{filepath.Dir(home), false},
		{specDir, false},
		{filepath.Join(specDir, ".rcluster", "dev"), true},
	} {
		err := CheckPurgeTarget(tc.dir, specDir)
		var pe *PurgeRefusedError
		if (err == nil) != tc.want || (err != nil && !errors.As(err, &pe)) {
			t.Errorf("CheckPurgeTarget(%s) = %v, want allowed=%v", tc.dir, err, tc.want)
		}
	}
}

func TestReadRefusesNewerVersion(t *testing.T) {
	dir := t.TempDir()
	write(t, Path(dir), `{"version":99}`)
	if _, err := Read(dir); err == nil {
		t.Fatal("a state file from a newer rcluster was accepted")
	}
}
