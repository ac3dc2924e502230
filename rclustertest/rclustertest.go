// Package rclustertest starts a real Redis Cluster for a Go test and stops
// it when the test ends. It is rcluster's `up` and `down`, in-process: real
// redis-server processes on a free block of ports, state in the test's temp
// dir, formed and healthy before Start returns.
//
//	func TestCheckout(t *testing.T) {
//		c := rclustertest.Start(t, rclustertest.WithReplicas(1))
//		rdb := c.ClusterClient() // closed when the test ends
//		if err := rdb.Set(ctx, "cart:1", "x", 0).Err(); err != nil {
//			t.Fatal(err)
//		}
//	}
//
// redis-server (>= 7.0) must be in PATH or given with WithRedisServer. When
// it is missing the test is skipped, except under CI=true where it fails.
package rclustertest

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/cluster"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/ui"
)

// Option configures Start.
type Option func(*config)

type config struct {
	nodes       int // 0: 3 masters and their replicas
	replicas    int
	directives  spec.Config
	redisServer string
	timeout     time.Duration
	host        string
}

// WithNodes sets the total number of nodes (masters and replicas). The
// default is 3 masters plus their replicas: 3 * (replicas + 1).
func WithNodes(n int) Option { return func(c *config) { c.nodes = n } }

// WithReplicas sets the number of replicas per master (default 0).
func WithReplicas(r int) Option { return func(c *config) { c.replicas = r } }

// WithConfig adds a redis.conf directive for every node, e.g.
// WithConfig("maxmemory", "64mb"). Keys rcluster owns (port, dir, ...) fail
// the test.
func WithConfig(key, value string) Option {
	return func(c *config) { c.directives = append(c.directives, spec.Directive{Key: key, Value: value}) }
}

// WithRedisServer sets the redis-server binary (a path, or a name looked up
// in PATH). The default is "redis-server".
func WithRedisServer(path string) Option { return func(c *config) { c.redisServer = path } }

// WithTimeout bounds bringing the cluster up (default 60s).
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// Cluster is a running cluster owned by one test.
type Cluster struct {
	t     testing.TB
	spec  *spec.Spec
	addrs []string
}

// Start brings up a cluster for t and registers its shutdown with
// t.Cleanup. It fails the test (t.Fatal) when the cluster cannot be formed.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	cfg := config{redisServer: "redis-server", timeout: 60 * time.Second, host: "127.0.0.1"}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.nodes == 0 {
		cfg.nodes = 3 * (cfg.replicas + 1)
	}
	bin, err := exec.LookPath(cfg.redisServer)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("rclustertest: redis-server %q not found (CI=true): %v", cfg.redisServer, err)
		}
		t.Skipf("rclustertest: redis-server %q not found: %v", cfg.redisServer, err)
	}
	base := portBlock(t, cfg.nodes)
	s := &spec.Spec{
		Name:        "rclustertest",
		Host:        cfg.host,
		Replicas:    cfg.replicas,
		Dir:         filepath.Join(t.TempDir(), "cluster"),
		RedisServer: bin,
		Config:      cfg.directives,
	}
	for p := base; p < base+cfg.nodes; p++ {
		s.Ports = append(s.Ports, p)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("rclustertest: invalid options:\n%v", err)
	}
	cl := &cluster.Cluster{Spec: s, Conn: redisconn.Options{}, Status: ui.Quiet(), Log: io.Discard}
	// Registered before Up so that a half-started cluster is stopped too.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cl.Down(ctx, false); err != nil {
			t.Errorf("rclustertest: stop cluster on %s: %v", portRange(s.Ports), err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	if err := cl.Up(ctx, cluster.UpOptions{Timeout: cfg.timeout}); err != nil {
		t.Fatalf("rclustertest: start cluster on %s: %v", portRange(s.Ports), err)
	}
	return &Cluster{t: t, spec: s, addrs: s.Addrs()}
}

// Addrs returns every node's host:port (masters first).
func (c *Cluster) Addrs() []string { return append([]string(nil), c.addrs...) }

// Masters returns the masters' host:port as planned (the first nodes).
func (c *Cluster) Masters() []string { return append([]string(nil), c.addrs[:c.spec.Masters()]...) }

// URL returns a redis:// URL naming every node, as go-redis's
// redis.ParseClusterURL reads it.
func (c *Cluster) URL() string {
	u := "redis://" + c.addrs[0]
	for i, a := range c.addrs[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + a
	}
	return u
}

// Dir is the cluster's state directory (configs, logs, data) in the test's
// temp dir.
func (c *Cluster) Dir() string { return c.spec.Dir }

// ClusterClient returns a new go-redis cluster client seeded with every
// node. It is closed when the test ends (before the cluster stops).
func (c *Cluster) ClusterClient() *redis.ClusterClient {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	c.t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Client returns a new go-redis client to one node (closed when the test
// ends).
func (c *Cluster) Client(addr string) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	c.t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func portRange(ports []int) string {
	if len(ports) == 0 {
		return "no ports"
	}
	return fmt.Sprintf("ports %d-%d", ports[0], ports[len(ports)-1])
}

// portBlock reserves n consecutive client ports whose bus ports (+10000)
// are free, held with a lock file until the test ends so that test
// processes running side by side never pick the same block. It uses the
// same lock files as rcluster's own test helpers.
func portBlock(t testing.TB, n int) int {
	t.Helper()
	if n <= 0 || n > 1000 {
		t.Fatalf("rclustertest: %d nodes: want 1..1000", n)
	}
	for range 200 {
		// Client ports 10000-19999, bus ports 20000-29999: below Linux's
		// ephemeral range (32768+), so outgoing connections don't take them.
		base := 10000 + rand.IntN(10000-n)
		var locks []*os.File
		release := func() {
			for _, f := range locks {
				f.Close()
			}
		}
		ok := true
		// Lock every ten-port group the block touches.
		for g := base / 10 * 10; g < base+n; g += 10 {
			path := filepath.Join(os.TempDir(), fmt.Sprintf("rcluster-test-port-%d.lock", g))
			f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
			if err != nil {
				release()
				t.Fatalf("rclustertest: port lock %s: %v", path, err)
			}
			locks = append(locks, f)
			if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
				ok = false
				break
			}
		}
		if ok && blockFree(base, n) {
			t.Cleanup(release)
			return base
		}
		release()
	}
	t.Fatalf("rclustertest: no free block of %d ports found", n)
	return 0
}

func blockFree(base, n int) bool {
	for p := base; p < base+n; p++ {
		for _, q := range []int{p, p + spec.BusPortOffset} {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(q)))
			if err != nil {
				return false
			}
			l.Close()
		}
	}
	return true
}
