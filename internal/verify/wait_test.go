package verify

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/redisconn"
)

// RunWait against a node that accepts connections and never answers (a
// hung node) gives up within its wait plus one call timeout, failing.
func TestRunWaitEndsWithinWaitPlusOneCallTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // hold it open, answer nothing
		}
	}()
	defer func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	}()
	const wait, call = 600 * time.Millisecond, 300 * time.Millisecond
	o := Options{Seeds: []string{l.Addr().String()}, Conn: redisconn.Options{Timeout: call}}
	start := time.Now()
	rep := RunWait(context.Background(), o, wait)
	took := time.Since(start)
	if rep.OK {
		t.Fatal("verify passed against a node that answers nothing")
	}
	// The bound itself, with room for scheduling on a loaded machine (CI
	// runs packages side by side on two cores).
	if limit := wait + call + time.Second; took > limit {
		t.Errorf("RunWait took %s, want at most wait+call timeout (%s) plus slack", took, wait+call)
	}
}
