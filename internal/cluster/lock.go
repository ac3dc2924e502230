package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/statedir"
)

// ErrLocked is returned when another rcluster command holds the state dir.
var ErrLocked = errors.New("another rcluster command is working on this cluster")

// lock takes an exclusive flock on <dir>/rcluster.lock, waiting up to wait
// (polling with short backoff) for a concurrent up/down to finish. The
// returned func releases it.
func lock(ctx context.Context, dir string, wait time.Duration) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "rcluster.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var b poll.Backoff
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil && !sameFile(f, path) {
			// The holder removed the lock file (a failed up deleting the
			// state dir it had created): this lock guards nothing; start over.
			f.Close()
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("state dir %s: %w", dir, err)
			}
			if f, err = os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600); err != nil {
				return nil, fmt.Errorf("lock %s: %w", path, err)
			}
			continue
		}
		if err == nil {
			_ = f.Truncate(0)
			_, _ = fmt.Fprintf(f, "%d\n", os.Getpid())
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if err := b.Wait(wctx); err != nil {
			f.Close()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			holder, _ := os.ReadFile(path)
			return nil, fmt.Errorf("%w (lock %s held by pid %s); try again when it finishes", ErrLocked, path, trimNL(string(holder)))
		}
	}
}

// sameFile reports whether path still names the open file f.
func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// removeBareStateDir deletes dir when it holds nothing but the lock file
// and an unformed state file, i.e. an up that created it failed before
// writing anything else. Call it while holding the lock (lock() copes with
// the file vanishing under a waiter).
func removeBareStateDir(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Name() != statedir.LockFile && e.Name() != statedir.StateFile {
			return
		}
	}
	if st, err := statedir.Read(dir); err != nil || (st != nil && st.Formed) {
		return
	}
	_ = os.Remove(statedir.Path(dir))
	if os.Remove(filepath.Join(dir, statedir.LockFile)) == nil {
		_ = os.Remove(dir)
	}
}

func trimNL(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	if s == "" {
		return "?"
	}
	return s
}
