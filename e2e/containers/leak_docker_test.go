package containers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
)

// recorder is a testing.TB that records errors instead of failing.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Logf(format string, args ...any) {
	r.TB.Logf(format, args...)
}
func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestLeakCheckDocker proves the leak check fails a test whose container or
// network survives, and removes them.
func TestLeakCheckDocker(t *testing.T) {
	RequireDocker(t)
	EnsureImage(t, DefaultImage)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := fmt.Sprintf("leak-test-%d", time.Now().UnixNano())
	labels := map[string]string{Label: "true", TestLabel: id}

	nw, err := tcnetwork.New(ctx, tcnetwork.WithLabels(labels))
	testcontainers.CleanupNetwork(t, nw) // safety net if the check misses it
	if err != nil {
		t.Fatal(err)
	}
	c, err := testcontainers.Run(ctx, DefaultImage, testcontainers.WithNoStart(),
		testcontainers.WithLabels(labels))
	testcontainers.CleanupContainer(t, c)
	if err != nil {
		t.Fatal(err)
	}

	rec := &recorder{TB: t}
	checkLeaks(rec, id)
	all := strings.Join(rec.errs, "\n")
	if !strings.Contains(all, "leak: container "+c.ID[:12]) || !strings.Contains(all, "leak: network "+nw.ID[:12]) {
		t.Fatalf("leak check reported:\n%s\nwant container %s and network %s", all, c.ID[:12], nw.ID[:12])
	}

	cli, err := dockerClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{}); err == nil {
		t.Errorf("leaked container %s was not removed", c.ID[:12])
	}
	if _, err := cli.NetworkInspect(ctx, nw.ID, client.NetworkInspectOptions{}); err == nil {
		t.Errorf("leaked network %s was not removed", nw.ID[:12])
	}

	rec2 := &recorder{TB: t}
	checkLeaks(rec2, id)
	if len(rec2.errs) != 0 {
		t.Fatalf("clean state reported leaks: %v", rec2.errs)
	}
}
