package slots

import (
	"context"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

func TestDbgWhy(t *testing.T) {
	nodes := redistest.Start(t, 6, "--cluster-node-timeout", "5000")
	p, _ := NewPlan(specNodes(nodes), 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error)
	st := time.Now()
	go func() { done <- Form(ctx, p, FormOptions{}) }()
	for {
		select {
		case err := <-done:
			t.Logf("%s form done: %v", time.Since(st), err)
			return
		case <-time.After(400 * time.Millisecond):
		}
		nr := CheckReady(ctx, p.Addrs(), 6, redisconn.Options{})
		t.Logf("%s: %s", time.Since(st).Round(time.Millisecond), FormatNotReady(nr))
	}
}
