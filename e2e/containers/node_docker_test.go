package containers

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/redisconn"
)

// pingUntil polls PING on addr until it succeeds (want true) or fails (want
// false), bounded by ctx.
func pingUntil(ctx context.Context, addr string, want bool) error {
	c := redisconn.Options{Timeout: 300 * time.Millisecond}.Node(addr)
	defer c.Close()
	var last error
	for delay := 10 * time.Millisecond; ; delay = min(delay*2, 200*time.Millisecond) {
		last = c.Ping(ctx).Err()
		if (last == nil) == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), last)
		case <-time.After(delay):
		}
	}
}

// TestNodeLifecycleDocker checks what the failure tests rely on: a restart
// keeps the IP and the data, a disconnected node is unreachable and comes
// back on the same IP, a paused node stops answering and resumes.
func TestNodeLifecycleDocker(t *testing.T) {
	RequireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw := NewNetwork(ctx, t)
	nodes := StartRedisNodes(ctx, t, nw, 2, WithArgs("--cluster-enabled", "no"))
	nd := nodes[0]
	if !nw.Subnet.Contains(nd.IP) || nodes[0].IP == nodes[1].IP {
		t.Fatalf("node IPs %v, %v not distinct in %v", nodes[0].IP, nodes[1].IP, nw.Subnet)
	}

	c := redisconn.Options{}.Node(nd.Addr)
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET on %s: %v", nd.Addr, err)
	}

	// Node 1 reaches node 0 over the network: exec redis-cli inside it.
	code, out, err := nodes[1].Exec(ctx, "redis-cli", "-h", nd.IP.String(), "get", "k")
	if err != nil || code != 0 || strings.TrimSpace(out) != "v" {
		t.Fatalf("node 1 reading node 0: code %d, %q, %v", code, out, err)
	}

	start := time.Now()
	if err := nd.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := nd.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop+start took %v", time.Since(start).Round(time.Millisecond))
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("after restart GET k = %q, %v; want v (AOF keeps it)", got, err)
	}

	if err := nd.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	if err := pingUntil(pctx, nd.Addr, false); err != nil {
		t.Fatalf("disconnected node %s still answers: %v", nd.Addr, err)
	}
	pcancel()
	if code, out, _ := nodes[1].Exec(ctx, "redis-cli", "-h", nd.IP.String(), "-t", "1", "ping"); code == 0 && strings.Contains(out, "PONG") {
		t.Fatalf("node 1 still reaches disconnected node 0: %q", out)
	}
	if err := nd.Reconnect(ctx); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel = context.WithTimeout(ctx, 10*time.Second)
	if err := pingUntil(pctx, nd.Addr, true); err != nil {
		t.Fatalf("reconnected node %s does not answer: %v", nd.Addr, err)
	}
	pcancel()

	if err := nd.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	fresh := redis.NewClient(&redis.Options{Addr: nd.Addr, DialTimeout: 300 * time.Millisecond,
		ReadTimeout: 300 * time.Millisecond, MaxRetries: -1, DisableIdentity: true, Protocol: 2})
	defer fresh.Close()
	if err := fresh.Ping(ctx).Err(); err == nil {
		t.Fatalf("paused node %s answered PING", nd.Addr)
	}
	if err := nd.Unpause(ctx); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel = context.WithTimeout(ctx, 10*time.Second)
	defer pcancel()
	if err := pingUntil(pctx, nd.Addr, true); err != nil {
		t.Fatalf("unpaused node %s does not answer: %v", nd.Addr, err)
	}
}
