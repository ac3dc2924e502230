package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rcluster/rcluster/internal/portblock"
)

// RclusterSample is one run of the rcluster path.
type RclusterSample struct {
	Ports string `json:"ports"`
	// UpMS is the wall time of `rcluster up -f spec` (it must return only
	// once the cluster is usable).
	UpMS float64 `json:"up_ms"`
	// UpMaxRSSKB is up's peak RSS in KiB: wait4's ru_maxrss, which covers
	// the rcluster process and any children it reaped itself (not
	// redis-server daemons it left running).
	UpMaxRSSKB int64 `json:"up_maxrss_kb"`
	// UsableOnReturn: the harness's first sweep right after up exited found
	// every node usable. When false, ConfirmWaitMS is how much longer it
	// took to become usable.
	UsableOnReturn bool    `json:"usable_on_return"`
	ConfirmWaitMS  float64 `json:"confirm_wait_ms"`
	// DownMS is the wall time of `rcluster down -f spec --purge`.
	DownMS       float64 `json:"down_ms"`
	DownMaxRSSKB int64   `json:"down_maxrss_kb"`
	// LeftFiles counts files still under the spec's dir after down --purge.
	LeftFiles int `json:"left_files"`
	// Phases are up -v's step and forming lines with their times, to tell
	// where an outlier spent its time.
	Phases []string `json:"phases,omitempty"`
	Error  string   `json:"error,omitempty"`
}

func specYAML(name string, base, n, replicas int, dir string) string {
	return fmt.Sprintf("name: %s\nhost: 127.0.0.1\nports: \"%d-%d\"\nreplicas: %d\ndir: %s\n",
		name, base, base+n-1, replicas, dir)
}

// runRcluster writes a spec, times `up` and `down --purge`, and confirms
// usability in between. Whatever happens, every redis-server working under
// its temp root is killed and the root removed before it returns.
func runRcluster(ctx context.Context, cfg *config, n, replicas, run int) (s RclusterSample, err error) {
	defer func() {
		if err != nil {
			s.Error = err.Error()
		}
	}()
	// The block is locked the way the integration tests lock theirs (same
	// range, same lock files), so a bench beside go test cannot take their
	// ports. Deferred before the cleanup below, release runs after it: the
	// block stays held until down and the kill sweep are done.
	base, release, err := portblock.Reserve(n)
	if err != nil {
		return s, fmt.Errorf("ports for %d nodes: %w", n, err)
	}
	defer release()
	root, err := os.MkdirTemp("", "clusterbench-rcluster-")
	if err != nil {
		return s, err
	}
	state := filepath.Join(root, "state")
	spec := filepath.Join(root, "cluster.yaml")
	upStarted, downDone := false, false
	defer func() {
		if upStarted && !downDone {
			// Best effort: let rcluster clean up its own state first.
			dctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			_, _ = rcl(dctx, cfg, root, "down-cleanup.log", "down", "-f", spec, "--purge")
			cancel()
		}
		killUnder(root)
		if !cfg.keep {
			os.RemoveAll(root)
		}
	}()
	s.Ports = fmt.Sprintf("%d-%d", base, base+n-1)
	name := fmt.Sprintf("bench-n%d-r%d-%d", n, replicas, run)
	if err := os.WriteFile(spec, []byte(specYAML(name, base, n, replicas, state)), 0o644); err != nil {
		return s, err
	}

	upCtx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	upStarted = true
	t0 := time.Now()
	ps, err := rcl(upCtx, cfg, root, "up.log", "-v", "up", "-f", spec)
	upEnd := time.Now()
	s.Phases = phases(filepath.Join(root, "up.log"))
	if err != nil {
		return s, fmt.Errorf("rcluster up on %s: %w", s.Ports, err)
	}
	s.UpMS = ms(upEnd.Sub(t0))
	s.UpMaxRSSKB = maxRSS(ps)

	pr := newProber(addrsFor(base, n))
	defer pr.Close()
	if why := pr.sweep(upCtx); why == "" {
		s.UsableOnReturn = true
	} else {
		end, _, err := pr.waitUsable(upCtx)
		if err != nil {
			return s, fmt.Errorf("after rcluster up returned (first check: %s): %w", why, err)
		}
		s.ConfirmWaitMS = ms(end.Sub(upEnd))
	}
	pr.Close()

	downCtx, cancel2 := context.WithTimeout(ctx, cfg.timeout)
	defer cancel2()
	t1 := time.Now()
	ps, err = rcl(downCtx, cfg, root, "down.log", "down", "-f", spec, "--purge")
	s.DownMS = ms(time.Since(t1))
	downDone = true
	if err != nil {
		return s, fmt.Errorf("rcluster down on %s: %w", s.Ports, err)
	}
	s.DownMaxRSSKB = maxRSS(ps)
	s.LeftFiles = countFiles(state)
	if k := killUnder(root); k > 0 {
		return s, fmt.Errorf("rcluster down --purge left %d redis-server processes running on %s", k, s.Ports)
	}
	return s, nil
}

// phases returns the step lines (✓/✗) and forming lines ("form: ...") of
// an up -v log, trimmed.
func phases(logPath string) []string {
	b, _ := os.ReadFile(logPath)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "✓") || strings.HasPrefix(line, "✗") || strings.HasPrefix(line, "form: ") {
			out = append(out, line)
		}
	}
	return out
}

// rcl runs the rcluster binary with output to root/logName. On failure the
// error carries the log's tail.
func rcl(ctx context.Context, cfg *config, root, logName string, args ...string) (*os.ProcessState, error) {
	logPath := filepath.Join(root, logName)
	// A file, not a pipe: Wait must not hang on daemons that inherit it.
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, cfg.rcluster, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	err = cmd.Run()
	if err != nil {
		b, _ := os.ReadFile(logPath)
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return cmd.ProcessState, fmt.Errorf("%w\n%s", err, tailBytes(b, 1500))
	}
	return cmd.ProcessState, nil
}

func maxRSS(ps *os.ProcessState) int64 {
	if ps == nil {
		return 0
	}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss // KiB on Linux
	}
	return 0
}

func countFiles(dir string) int {
	k := 0
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			k++
		}
		return nil
	})
	return k
}

// rclusterUsable says why the binary cannot be benchmarked, or "".
func rclusterUsable(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return path + " not found (build it first)"
		}
		return err.Error()
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return path + " is not an executable file"
	}
	return ""
}
