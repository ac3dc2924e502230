package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/verify"
)

func runCLI(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	if dir != "" {
		t.Chdir(dir)
	}
	var out, errb bytes.Buffer
	err := Run(context.Background(), append([]string{"rcluster"}, args...), &out, &errb)
	code := ExitCode(err, &errb)
	return out.String(), errb.String(), code
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: x\nports: [1, 2]\nbogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{}, 2, "no command given"},
		{[]string{"nosuchcommand"}, 2, "nosuchcommand"},
		{[]string{"up", "--bogus-flag"}, 2, "bogus-flag"},
		{[]string{"up", "-f", bad}, 2, "bad.yaml:3"},
		{[]string{"status", "-f", filepath.Join(dir, "missing.yaml")}, 2, "missing.yaml"},
		{[]string{"verify", "-f", bad, "--addr", "127.0.0.1:1"}, 2, "not both"},
		{[]string{"--version"}, 0, ""},
	}
	for _, c := range cases {
		_, stderr, code := runCLI(t, dir, c.args...)
		if code != c.code {
			t.Errorf("rcluster %v: exit %d, want %d (stderr %q)", c.args, code, c.code, stderr)
		}
		if !strings.Contains(stderr, c.want) {
			t.Errorf("rcluster %v: stderr %q lacks %q", c.args, stderr, c.want)
		}
	}
}

func TestBadSpecReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	spec := "ports: [7001, 7001, 70000]\nreplicas: -1\nconfig:\n  port: 5\n"
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runCLI(t, dir, "up")
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	for _, want := range []string{"cluster.yaml:1", "7001", "70000", "cluster.yaml:2", "cluster.yaml:4"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".rcluster")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a rejected spec created state: %v", err)
	}
}

func TestUpDryRunStartsNothing(t *testing.T) {
	dir := t.TempDir()
	out, stderr, code := runCLI(t, dir, "up", "--dry-run")
	if code != 0 {
		t.Fatalf("up --dry-run: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"0-5460", "5461-10922", "10923-16383", "cluster-enabled yes", "redis_7003.conf"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".rcluster")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("up --dry-run wrote state: %v", err)
	}
}

func TestJUnitMarksSkippedChecks(t *testing.T) {
	rep := verify.Report{Checks: []verify.Result{
		{Name: "cluster_state ok", Detail: "127.0.0.1:7001: cluster_state:fail"},
		{Name: "pipeline across nodes", Skipped: true, Detail: "not run: topology checks failed"},
	}}
	var b bytes.Buffer
	if err := writeJUnit(&b, rep, time.Now()); err != nil {
		t.Fatal(err)
	}
	x := b.String()
	for _, want := range []string{`failures="1"`, `skipped="1"`, `<skipped message="not run: topology checks failed">`, `<failure message="127.0.0.1:7001: cluster_state:fail"`} {
		if !strings.Contains(x, want) {
			t.Errorf("JUnit lacks %s:\n%s", want, x)
		}
	}
	if got := len(rep.Failed()); got != 1 {
		t.Errorf("Failed() counts %d checks, want 1 (skipped ones are not failures)", got)
	}
}
