package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/statedir"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

// The data-loss bug as a new user met it: `dir:` names a directory that
// already holds the user's files, then `down --purge` deleted all of it.
// The user's files must survive up, down and down --purge; rcluster's own
// files must be gone after the purge.
func TestPurgeKeepsUserFilesInStateDir(t *testing.T) {
	redistest.Integration(t)
	c := realCluster(t, 3, 0)
	s := c.Spec
	notes := filepath.Join(s.Dir, "notes.txt")
	inLog := filepath.Join(s.Dir, "log", "my.log")
	writeFile(t, notes, "my notes")
	writeFile(t, inLog, "mine")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	if err := c.Up(ctx, UpOptions{}); err != nil {
		t.Fatalf("up: %v", err)
	}
	if err := c.Down(ctx, DownOptions{}); err != nil {
		t.Fatalf("down: %v", err)
	}
	if err := c.Down(ctx, DownOptions{Purge: true}); err != nil {
		t.Fatalf("down --purge: %v", err)
	}
	for _, p := range []string{notes, inLog} {
		if b, err := os.ReadFile(p); err != nil || len(b) == 0 {
			t.Errorf("user file %s did not survive down --purge: %v", p, err)
		}
	}
	for _, p := range []string{statedir.Path(s.Dir), s.ConfDir(), s.DBDir(), s.RunDir(), s.LogFile(s.Ports[0]),
		filepath.Join(s.Dir, statedir.LockFile)} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was not purged: %v", p, err)
		}
	}
}

// A purge of the spec file's own directory is refused before anything is
// stopped: the cluster still runs afterwards.
func TestPurgeRefusesSpecDirBeforeStopping(t *testing.T) {
	redistest.Integration(t)
	c := realCluster(t, 3, 0)
	c.Spec.Path = filepath.Join(c.Spec.Dir, "cluster.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Up(ctx, UpOptions{}); err != nil {
		t.Fatalf("up: %v", err)
	}
	var pe *statedir.PurgeRefusedError
	if err := c.Down(ctx, DownOptions{Purge: true}); !errors.As(err, &pe) {
		t.Fatalf("down --purge of the spec's dir = %v, want a PurgeRefusedError", err)
	}
	for i, pid := range statePids(t, c) {
		if pid == 0 {
			t.Errorf("node %d was stopped by a refused purge", c.Spec.Ports[i])
		}
	}
	c.Spec.Path = ""
}
