package provider

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRedis writes a script that answers --version like redis-server does.
func fakeRedis(t *testing.T, version string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "redis-server")
	body := fmt.Sprintf("#!/bin/sh\necho 'Redis server v=%s sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1'\n", version)
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckBinary(t *testing.T) {
	ctx := context.Background()
	ok := fakeRedis(t, "7.0.15")
	if got, err := CheckBinary(ctx, ok); err != nil || got != ok+" (Redis 7.0.15)" {
		t.Fatalf("CheckBinary(7.0.15) = %q, %v", got, err)
	}
	old := fakeRedis(t, "6.2.6")
	if _, err := CheckBinary(ctx, old); err == nil || !strings.Contains(err.Error(), old+" is Redis 6.2.6") || !strings.Contains(err.Error(), ">= 7.0") {
		t.Fatalf("CheckBinary(6.2.6) = %v", err)
	}
	if _, err := CheckBinary(ctx, "/nonexistent/redis-server"); err == nil || !strings.Contains(err.Error(), `"/nonexistent/redis-server" not found`) {
		t.Fatalf("CheckBinary(missing) = %v", err)
	}
}

func TestCheckWritable(t *testing.T) {
	dir := t.TempDir()
	if err := CheckWritable(dir); err != nil {
		t.Fatal(err)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 0 {
		t.Fatalf("CheckWritable left %v behind", left)
	}
	if err := CheckWritable(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "is not writable") {
		t.Fatalf("CheckWritable(missing) = %v", err)
	}
}
