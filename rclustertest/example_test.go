package rclustertest_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/rclustertest"
)

// TestExample is how another project's test uses the package: start a
// cluster with one replica per master, talk to it through go-redis.
func TestExample(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server processes: skipped with -short")
	}
	c := rclustertest.Start(t, rclustertest.WithReplicas(1), rclustertest.WithConfig("maxmemory", "64mb"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if got := len(c.Addrs()); got != 6 {
		t.Fatalf("%d nodes, want 6", got)
	}
	rdb := c.ClusterClient()
	// Keys land on every master; all of them are readable back.
	for i := range 100 {
		if err := rdb.Set(ctx, fmt.Sprintf("user:%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET user:%d: %v", i, err)
		}
	}
	for i := range 100 {
		if v, err := rdb.Get(ctx, fmt.Sprintf("user:%d", i)).Int(); err != nil || v != i {
			t.Fatalf("GET user:%d = %d, %v", i, v, err)
		}
	}
	var (
		mu        sync.Mutex // ForEachMaster calls fn concurrently
		perMaster []int64
	)
	err := rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		mu.Lock()
		perMaster = append(perMaster, n)
		mu.Unlock()
		return err
	})
	if err != nil || len(perMaster) != 3 {
		t.Fatalf("masters: %v, %v", perMaster, err)
	}
	for _, n := range perMaster {
		if n == 0 {
			t.Errorf("a master holds no keys: %v", perMaster)
		}
	}
	// The topology: 3 masters each with one replica.
	shards, err := rdb.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range shards {
		if len(sh.Nodes) != 2 {
			t.Errorf("shard %v has %d nodes, want 2", sh.Slots, len(sh.Nodes))
		}
	}
	// WithConfig reached every node.
	for _, a := range c.Addrs() {
		v, err := c.Client(a).ConfigGet(ctx, "maxmemory").Result()
		if err != nil || v["maxmemory"] != strconv.Itoa(64<<20) {
			t.Errorf("%s: maxmemory = %v, %v", a, v, err)
		}
	}
	// The URL names every node, as go-redis reads it.
	o, err := redis.ParseClusterURL(c.URL())
	if err != nil || strings.Join(o.Addrs, ",") != strings.Join(c.Addrs(), ",") {
		t.Errorf("ParseClusterURL(%s) = %v, %v", c.URL(), o, err)
	}
}

// TestStopsAtCleanup checks that the nodes are gone once the test that
// started them ends.
func TestStopsAtCleanup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server processes: skipped with -short")
	}
	var addrs []string
	t.Run("inner", func(t *testing.T) {
		c := rclustertest.Start(t, rclustertest.WithNodes(3))
		addrs = c.Addrs()
		if err := c.ClusterClient().Ping(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
	})
	if len(addrs) != 3 {
		t.Fatalf("inner test did not start 3 nodes: %v", addrs)
	}
	for _, a := range addrs {
		if conn, err := net.DialTimeout("tcp", a, 200*time.Millisecond); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections after the test ended", a)
		}
	}
}

// TestPasswordAndTLS: the clients the package hands out authenticate and
// trust the generated CA; a client without the password is refused.
func TestPasswordAndTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server processes: skipped with -short")
	}
	c := rclustertest.Start(t, rclustertest.WithPassword("hunter2"), rclustertest.WithTLS())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := c.ClusterClient()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET with password over TLS: %v", err)
	}
	if !strings.HasPrefix(c.URL(), "rediss://:hunter2@") || c.Password() != "hunter2" {
		t.Errorf("URL %s, password %q", c.URL(), c.Password())
	}
	plain := redis.NewClient(&redis.Options{Addr: c.Addrs()[0], MaxRetries: -1})
	defer plain.Close()
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Error("a plaintext client without password was answered")
	}
}

func TestBadOptionsFailTheTest(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server: skipped with -short")
	}
	// Run in a fake TB to observe the failure without failing this test.
	ft := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }()
		rclustertest.Start(ft, rclustertest.WithNodes(2))
	}()
	<-done
	ft.runCleanups()
	if !strings.Contains(ft.fatal, "Redis Cluster needs at least 3") {
		t.Errorf("Start with 2 nodes: fatal = %q", ft.fatal)
	}
}

// fakeTB records Fatalf and cleanups instead of failing the real test.
type fakeTB struct {
	testing.TB
	fatal    string
	cleanups []func()
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, a ...any) {
	f.fatal = fmt.Sprintf(format, a...)
	panic("fatal")
}
func (f *fakeTB) Skipf(format string, a ...any) { f.Fatalf(format, a...) }
func (f *fakeTB) Cleanup(fn func())             { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}
