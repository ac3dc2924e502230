package slots

import (
	"strings"
	"testing"
)

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
