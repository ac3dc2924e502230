package redisconn

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SmallNode differs from Node only in the buffers, the pipeline pool and
// ContextTimeoutEnabled: no retries stays no retries (a retried SHUTDOWN
// would hit a closed port), timeouts stay the caller's.
func TestSmallNodeKeepsOptions(t *testing.T) {
	for _, o := range []Options{{}, {Timeout: 300 * time.Millisecond, Password: "pw", Username: "u"}} {
		ref := o.Node("127.0.0.1:1")
		want := *ref.Options()
		_ = ref.Close()
		c := o.SmallNode("127.0.0.1:1")
		got := *c.Options()
		_ = c.Close()
		if got.ReadBufferSize != SmallBuf || got.WriteBufferSize != SmallBuf || got.PipelinePoolSize != -1 || !got.ContextTimeoutEnabled {
			t.Fatalf("buffers %d/%d, pipeline pool %d, context timeouts %t", got.ReadBufferSize, got.WriteBufferSize, got.PipelinePoolSize, got.ContextTimeoutEnabled)
		}
		compareOptions(t, want, got, "ReadBufferSize", "WriteBufferSize", "PipelinePoolSize", "ContextTimeoutEnabled")
	}
}

// compareOptions fails on any exported, comparable field (funcs and
// pointers aside) that differs, except the named ones.
func compareOptions(t *testing.T, want, got redis.Options, except ...string) {
	t.Helper()
	skip := map[string]bool{}
	for _, e := range except {
		skip[e] = true
	}
	wv, gv := reflect.ValueOf(want), reflect.ValueOf(got)
	checked := 0
	for i := 0; i < wv.NumField(); i++ {
		f := wv.Type().Field(i)
		if !f.IsExported() || skip[f.Name] {
			continue
		}
		switch f.Type.Kind() {
		case reflect.Func, reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Struct, reflect.Chan:
			continue
		}
		checked++
		if w, g := wv.Field(i).Interface(), gv.Field(i).Interface(); w != g {
			t.Errorf("option %s: %v, want %v", f.Name, g, w)
		}
	}
	if checked < 10 {
		t.Fatalf("only %d options compared", checked)
	}
}

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
