package slots

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A backoff with max set never waits longer than max; without it, pollMax.
func TestBackoffMax(t *testing.T) {
	ctx := context.Background()
	b := backoff{max: 20 * time.Millisecond}
	for i := 0; i < 5; i++ {
		if err := b.wait(ctx); err != nil {
			t.Fatal(err)
		}
		if b.d > 20*time.Millisecond {
			t.Fatalf("after wait %d the next delay is %s, want <= 20ms", i+1, b.d)
		}
	}
	if b.d != 20*time.Millisecond {
		t.Fatalf("delay settled at %s, want 20ms", b.d)
	}
	dd := backoff{d: 4 * pollMax}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := dd.wait(cctx); err == nil {
		t.Fatal("wait on a cancelled context returned nil")
	}
	if dd.d != pollMax {
		t.Fatalf("without max the delay is capped at %s, got %s", pollMax, dd.d)
	}
}

// The hint appears only for large clusters with a low node timeout and
// names the value to set.
func TestNodeTimeoutHint(t *testing.T) {
	if h := nodeTimeoutHint(5000, 300); !strings.Contains(h, "cluster-node-timeout 5000 is low for 300 nodes") || !strings.Contains(h, "cluster-node-timeout: 30000") {
		t.Fatalf("hint for 5000 at 300 nodes: %q", h)
	}
	for _, c := range [][2]int{{30000, 300}, {5000, 50}, {0, 300}} {
		if h := nodeTimeoutHint(c[0], c[1]); h != "" {
			t.Fatalf("hint for %d at %d nodes: %q, want none", c[0], c[1], h)
		}
	}
}
