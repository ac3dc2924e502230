// Package redistest starts real redis-server processes for integration
// tests: free port blocks (client and bus ports), foreground processes that
// are always killed in t.Cleanup, and clusters formed by the reference tool
// (redis-cli --cluster create) so rcluster's code can be judged against it.
package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9/logging"

	"github.com/rcluster/rcluster/internal/health"
	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/portblock"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/topology"
)

func init() {
	// Tests poll nodes that are not up yet on purpose; go-redis's own
	// "failed to dial" lines would only bury the real failures.
	logging.Disable()
}

// RequireBinary returns the path of name (e.g. "redis-server"). When it is
// missing the test is skipped, except under CI=true where it fails: a test
// skipped in CI is not a test.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found in PATH (CI=true: run `make deps`): %v", name, err)
		}
		t.Skipf("%s not found in PATH; run `make deps` to install it", name)
	}
	return p
}

// Integration skips the test under `go test -short`.
func Integration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
}

// PortBlock reserves n consecutive client ports whose bus ports (+10000) are
// free too, held until the test ends so that test binaries running side by
// side never pick overlapping blocks (see internal/portblock).
func PortBlock(t testing.TB, n int) int {
	t.Helper()
	base, release, err := portblock.Reserve(n)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(release)
	return base
}

// Node is a redis-server process started by Start.
type Node struct {
	Port int
	Addr string
	Dir  string
	Cmd  *exec.Cmd
}

// Start launches n foreground redis-server processes on a fresh port block
// with cluster mode on (unless args contain "--cluster-enabled no"), each in
// its own temp dir, and waits until each answers PING. Extra args are passed
// to every node. All processes are killed at cleanup.
func Start(t testing.TB, n int, args ...string) []*Node {
	t.Helper()
	bin := RequireBinary(t, "redis-server")
	base := PortBlock(t, n)
	nodes := make([]*Node, n)
	for i := range nodes {
		port := base + i
		dir := t.TempDir()
		a := []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--dir", dir, "--daemonize", "no", "--save", "", "--appendonly", "no",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000", "--repl-diskless-sync-delay", "0",
			"--logfile", filepath.Join(dir, "redis.log"),
		}
		a = append(a, args...)
		cmd := exec.Command(bin, a...)
		cmd.SysProcAttr = nodeSysProcAttr()
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server on %d: %v", port, err)
		}
		node := &Node{Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: dir, Cmd: cmd}
		nodes[i] = node
		t.Cleanup(func() { node.Kill() })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, nd := range nodes {
		if err := WaitPing(ctx, nd.Addr); err != nil {
			t.Fatalf("redis-server %s not ready: %v (log: %s)", nd.Addr, err, tail(filepath.Join(nd.Dir, "redis.log")))
		}
	}
	return nodes
}

// Kill stops the process with SIGKILL (after SIGCONT, in case a test stopped
// it) and reaps it. Safe to call twice.
func (n *Node) Kill() {
	if n.Cmd == nil || n.Cmd.Process == nil || n.Cmd.ProcessState != nil {
		return
	}
	_ = n.Cmd.Process.Signal(syscall.SIGCONT)
	_ = n.Cmd.Process.Kill()
	_ = n.Cmd.Wait()
}

// Signal sends sig to the node's process.
func (n *Node) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := n.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to %s: %v", sig, n.Addr, err)
	}
}

// Addrs returns the nodes' addresses.
func Addrs(nodes []*Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Addr
	}
	return out
}

// WaitPing polls addr with PING (short backoff) until it answers or ctx ends.
func WaitPing(ctx context.Context, addr string) error {
	c := redisconn.Options{Timeout: time.Second}.Node(addr)
	defer c.Close()
	var b poll.Backoff
	for {
		err := c.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		if werr := b.Wait(ctx); werr != nil {
			return fmt.Errorf("%w (last error: %v)", werr, err)
		}
	}
}

// CreateCluster forms a cluster on nodes with the reference tool,
// `redis-cli --cluster create --cluster-replicas replicas --cluster-yes`, and
// waits until every node reports cluster_state:ok and knows every node.
func CreateCluster(t testing.TB, nodes []*Node, replicas int) {
	t.Helper()
	cli := RequireBinary(t, "redis-cli")
	args := append([]string{"--cluster", "create"}, Addrs(nodes)...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := WaitClusterOK(ctx, nodes); err != nil {
		t.Fatalf("cluster made by redis-cli never became healthy: %v", err)
	}
}

// WaitClusterOK polls until the nodes are a healthy cluster by rcluster's
// one definition (health.Judge: every node ok, all known, agreeing on slots
// and roles, replica links up), so that tests on a hand-made cluster start
// from the state verify and up call healthy. (Right after redis-cli's
// create some views still show replicas as masters for up to ~1 s.)
func WaitClusterOK(ctx context.Context, nodes []*Node) error {
	var last []health.Problem
	b := poll.Backoff{Min: 10 * time.Millisecond, Max: 200 * time.Millisecond}
	for {
		answers := make([]health.Answer, len(nodes))
		for i, n := range nodes {
			answers[i] = answer(ctx, n.Addr)
		}
		if last = health.Judge(answers, len(nodes)); len(last) == 0 {
			return nil
		}
		if err := b.Wait(ctx); err != nil {
			return fmt.Errorf("%w: %s", err, last[0])
		}
	}
}

// answer is what one node says of the cluster, as health judges it.
func answer(ctx context.Context, addr string) health.Answer {
	c := redisconn.Options{Timeout: time.Second}.Node(addr)
	defer c.Close()
	a := health.Answer{Addr: addr}
	info, err := c.ClusterInfo(ctx).Result()
	if err == nil {
		a.Info = topology.ParseInfo(info)
		var txt string
		if txt, err = c.ClusterNodes(ctx).Result(); err == nil {
			a.Nodes, err = topology.ParseNodes(txt)
		}
	}
	if err == nil {
		var repl string
		if repl, err = c.Info(ctx, "replication").Result(); err == nil {
			a.Repl = topology.ParseInfo(repl)
		}
	}
	a.Err = err
	return a
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
