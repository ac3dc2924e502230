package redisconn

import (
	"reflect"
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
