package procmgr

import (
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/redisconn"
)

// smallClient must keep redisconn's choices through go-redis's second
// round of defaulting: with retries back on, SHUTDOWN (whose connection
// the server closes) would be retried against a closed port.
func TestSmallClientKeepsRetriesAndTimeouts(t *testing.T) {
	o := redisconn.Options{Timeout: 300 * time.Millisecond}
	ref := o.Node("127.0.0.1:1")
	want := *ref.Options()
	_ = ref.Close()
	c := smallClient(o.Node("127.0.0.1:1"))
	got := *c.Options()
	_ = c.Close()
	if got.MaxRetries != want.MaxRetries || got.ReadTimeout != want.ReadTimeout || got.WriteTimeout != want.WriteTimeout ||
		got.DialTimeout != want.DialTimeout || got.DialerRetries != want.DialerRetries || got.PoolSize != want.PoolSize {
		t.Fatalf("got retries %d timeouts %v/%v/%v dialer retries %d pool %d; want %d %v/%v/%v %d %d",
			got.MaxRetries, got.ReadTimeout, got.WriteTimeout, got.DialTimeout, got.DialerRetries, got.PoolSize,
			want.MaxRetries, want.ReadTimeout, want.WriteTimeout, want.DialTimeout, want.DialerRetries, want.PoolSize)
	}
	if got.ReadBufferSize != smallBuf || got.WriteBufferSize != smallBuf || got.PipelinePoolSize != -1 {
		t.Fatalf("buffers %d/%d, pipeline pool %d", got.ReadBufferSize, got.WriteBufferSize, got.PipelinePoolSize)
	}
}
