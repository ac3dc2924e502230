// Package e2e drives the built rcluster binary against real redis-server
// processes (and, in *_docker_test.go, containers).
package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// binary is the rcluster binary built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	dir, err := os.MkdirTemp("", "rcluster-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "rcluster")
	build := exec.Command("go", "build", "-o", binary, "../cmd/rcluster")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build rcluster:", err)
		return 1
	}
	return m.Run()
}

type result struct {
	stdout, stderr string
	code           int
}

// rcluster runs the binary with args in dir and returns its output and exit code.
func rcluster(t *testing.T, dir string, args ...string) result {
	t.Helper()
	return runBinary(t, dir, append(os.Environ(), "NO_COLOR=1"), nil, args...)
}

// runBinary runs the binary in dir with exactly env, calling during (when
// non-nil) every 20ms while it runs, and returns its output and exit code.
func runBinary(t *testing.T, dir string, env []string, during func(), args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = dir
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("start rcluster %v: %v", args, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	for waiting := true; waiting; {
		if during != nil {
			during()
		}
		select {
		case err = <-done:
			waiting = false
		case <-time.After(20 * time.Millisecond):
		}
	}
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run rcluster %v: %v", args, err)
	}
	t.Logf("$ rcluster %s  (exit %d)\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return result{out.String(), errb.String(), code}
}

// mustRun runs rcluster and fails the test unless it exits 0.
func mustRun(t *testing.T, dir string, args ...string) result {
	t.Helper()
	r := rcluster(t, dir, args...)
	if r.code != 0 {
		t.Fatalf("rcluster %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}
