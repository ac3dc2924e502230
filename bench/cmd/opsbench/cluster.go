package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/portblock"
	"github.com/rcluster/rcluster/internal/redisconn"
)

// Every benchmark's cluster starts with 3 masters.
const clusterMasters = 3

// shape is a benchmark cluster's size: the ports it holds (block), the
// nodes its spec lists at first (the block's first ones) and the replicas
// per master.
type shape struct{ block, nodes, replicas int }

// opsShape is issue 13's cluster: 3 masters with one replica each.
var opsShape = shape{block: 6, nodes: 6, replicas: 1}

// benchCluster is one cluster made by `rcluster up` of a spec the harness
// wrote into a temp dir of its own, on a port block held through
// internal/portblock (the integration tests' locks, so a bench beside
// `go test` never takes their ports).
type benchCluster struct {
	cfg         *config
	name        string
	root        string // temp dir: the spec, rcluster's state, command logs
	spec        string
	base        int
	shape       shape
	nodes       int // the spec's nodes now (a scale changes them)
	nodeTimeout time.Duration
	release     func()
	started     bool // up was attempted: close must bring it down
	clients     map[string]*redis.Client
	elections   elections
	seq         int   // numbers the command logs
	keys        int   // keys written so far (0: none yet)
	dirty       bool  // a timed step changed the cluster: the next one needs a new one
	hand        []int // ports of nodes the hand way started outside the spec
}

// newCluster reserves a port block and writes the spec; nothing runs yet.
func newCluster(cfg *config, name string, nodeTimeout time.Duration, sh shape) (*benchCluster, error) {
	base, release, err := portblock.Reserve(sh.block)
	if err != nil {
		return nil, fmt.Errorf("ports for %d nodes: %w", sh.block, err)
	}
	root, err := os.MkdirTemp("", "opsbench-")
	if err != nil {
		release()
		return nil, err
	}
	c := &benchCluster{cfg: cfg, name: name, root: root, spec: filepath.Join(root, "cluster.yaml"), base: base, shape: sh,
		nodeTimeout: nodeTimeout, release: release, clients: map[string]*redis.Client{}}
	if err := c.writeSpec(sh.nodes); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// writeSpec (re)writes the spec with the block's first n ports: the next
// `rcluster up` scales a running cluster to them.
func (c *benchCluster) writeSpec(n int) error {
	c.nodes = n
	return os.WriteFile(c.spec, []byte(specYAML(c.name, c.base, n, c.shape.replicas, filepath.Join(c.root, "state"), c.nodeTimeout)), 0o600)
}

// specYAML is the spec of a benchmark cluster: n nodes from base, the
// given replicas per master and cluster-node-timeout.
func specYAML(name string, base, n, replicas int, dir string, nodeTimeout time.Duration) string {
	return fmt.Sprintf("name: %s\nhost: 127.0.0.1\nports: \"%d-%d\"\nreplicas: %d\ndir: %s\nconfig:\n  cluster-node-timeout: %d\n",
		name, base, base+n-1, replicas, dir, nodeTimeout.Milliseconds())
}

// ports is the whole block the cluster holds.
func (c *benchCluster) ports() string { return fmt.Sprintf("%d-%d", c.base, c.base+c.shape.block-1) }

func (c *benchCluster) addr(i int) string { return "127.0.0.1:" + strconv.Itoa(c.base+i) }

// addrs are the nodes the spec lists now.
func (c *benchCluster) addrs() []string {
	out := make([]string, c.nodes)
	for i := range out {
		out[i] = c.addr(i)
	}
	return out
}

// client is the harness's own connection to one node, kept across polls
// so a poll costs one round trip.
func (c *benchCluster) client(addr string) *redis.Client {
	cl, ok := c.clients[addr]
	if !ok {
		cl = redisconn.Options{Timeout: time.Second}.Node(addr)
		c.clients[addr] = cl
	}
	return cl
}

func (c *benchCluster) up(ctx context.Context) (time.Duration, error) {
	c.started = true
	_, took, err := c.rcl(ctx, "up")
	return took, err
}

func (c *benchCluster) downPurge(ctx context.Context) (time.Duration, error) {
	c.closeClients() // the nodes go away; so must our connections to them
	_, took, err := c.rcl(ctx, "down", "--purge")
	return took, err
}

func (c *benchCluster) closeClients() {
	for a, cl := range c.clients {
		cl.Close()
		delete(c.clients, a)
	}
}

// close brings the cluster down with its data, kills any redis-server still
// working under the temp dir (a failed run), removes the dir and frees the
// ports, in that order.
func (c *benchCluster) close() {
	if len(c.hand) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := c.stopHand(ctx); err != nil {
			fmt.Fprintln(c.cfg.progressOut, "opsbench:", err)
		}
		cancel()
	}
	c.closeClients()
	if c.started {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, _, _ = c.rcl(ctx, "down", "--purge")
		cancel()
	}
	killLeftovers(c.root)
	if !c.cfg.keep {
		os.RemoveAll(c.root)
	}
	c.release()
}

// rcl runs `rcluster <command> -f <spec> <args...>` and returns its stdout and wall
// time (see run).
func (c *benchCluster) rcl(ctx context.Context, args ...string) ([]byte, time.Duration, error) {
	out, _, took, err := c.rclLog(ctx, args...)
	return out, took, err
}

// rclLog is rcl that also returns stderr, where `up -v` prints its steps.
func (c *benchCluster) rclLog(ctx context.Context, args ...string) (stdout, stderr []byte, took time.Duration, err error) {
	// -f right after the command word: rcluster (at 62840b1) ignores a
	// short -f given after a NODE argument and falls back to the default
	// spec.
	argv := append([]string{args[0], "-f", c.spec}, args[1:]...)
	return c.run(ctx, strings.Join(args[:min(2, len(args))], "-"), c.cfg.rcluster, argv...)
}

// run runs bin with argv and returns its stdout, stderr and wall time,
// from just before the process is started to its exit. Output goes to
// files named after label, not pipes: daemons rcluster (or the hand way)
// starts must not hold a pipe open that Wait would wait for. A failure
// carries the stderr tail (or stdout's, which is where redis-cli reports).
func (c *benchCluster) run(ctx context.Context, label, bin string, argv ...string) (stdout, stderr []byte, took time.Duration, err error) {
	c.seq++
	stem := filepath.Join(c.root, fmt.Sprintf("%03d-%s", c.seq, label))
	outF, err := os.Create(stem + ".out")
	if err != nil {
		return nil, nil, 0, err
	}
	defer outF.Close()
	errF, err := os.Create(stem + ".err")
	if err != nil {
		return nil, nil, 0, err
	}
	defer errF.Close()
	cmd := exec.CommandContext(ctx, bin, argv...)
	cmd.Stdout, cmd.Stderr = outF, errF
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C reaches the harness only
	cmd.WaitDelay = 2 * time.Second
	t0 := time.Now()
	err = cmd.Run()
	took = time.Since(t0)
	stdout, _ = os.ReadFile(stem + ".out")
	stderr, _ = os.ReadFile(stem + ".err")
	if err != nil {
		msg := bytes.TrimSpace(stderr)
		if len(msg) == 0 {
			msg = bytes.TrimSpace(stdout)
		}
		if len(msg) > 1500 {
			msg = msg[len(msg)-1500:]
		}
		return stdout, stderr, took, fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(argv, " "), err, msg)
	}
	return stdout, stderr, took, nil
}

// pidfile is where rcluster's process runtime records the pid of the node
// on port.
func (c *benchCluster) pidfile(port int) string {
	return filepath.Join(c.root, "state", "run", "redis_"+strconv.Itoa(port)+".pid")
}

// provenPid is the pid of the redis-server serving port, proven three
// ways before the hand path may signal it: pidfile names it, it is a
// redis-server working under the temp dir, and the node on the port
// reports it as its process_id.
func (c *benchCluster) provenPid(ctx context.Context, port int, pidfile string) (int, error) {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pidfile %s: bad pid %q", pidfile, b)
	}
	if !isRedisUnder(pid, c.root) {
		return 0, fmt.Errorf("pid %d of %s is not a redis-server under %s", pid, pidfile, c.root)
	}
	info, err := c.client("127.0.0.1:"+strconv.Itoa(port)).Info(ctx, "server").Result()
	if err != nil {
		return 0, fmt.Errorf("node %d: info server: %w", port, err)
	}
	if got := infoField(info, "process_id"); got != strconv.Itoa(pid) {
		return 0, fmt.Errorf("node %d reports process_id %s, its pidfile %d", port, got, pid)
	}
	return pid, nil
}

func infoField(info, key string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), key+":"); ok {
			return v
		}
	}
	return ""
}

// isRedisUnder reports whether pid is a live redis-server whose working
// directory (Redis chdirs to its `dir`) is root or below it.
func isRedisUnder(pid int, root string) bool {
	proc := "/proc/" + strconv.Itoa(pid)
	cwd, err := os.Readlink(proc + "/cwd")
	if err != nil {
		return false
	}
	cwd = strings.TrimSuffix(cwd, " (deleted)")
	root = filepath.Clean(root)
	if cwd != root && !strings.HasPrefix(cwd, root+"/") {
		return false
	}
	// Debian's redis-server is a symlink to redis-check-rdb, and Redis
	// retitles itself: accept either name in the executable or argv[0].
	exe, _ := os.Readlink(proc + "/exe")
	cmdline, _ := os.ReadFile(proc + "/cmdline")
	argv0, _, _ := strings.Cut(string(cmdline), "\x00")
	argv0, _, _ = strings.Cut(argv0, " ")
	for _, name := range []string{filepath.Base(exe), filepath.Base(argv0)} {
		if strings.HasPrefix(name, "redis-server") || strings.HasPrefix(name, "redis-check-") {
			return true
		}
	}
	return false
}

// killLeftovers SIGKILLs every redis-server working under root (only a
// failed or interrupted run leaves one: down --purge stops them) and waits
// up to 5 s for them to go. It returns how many it found.
func killLeftovers(root string) int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && isRedisUnder(pid, root) {
			pids = append(pids, pid)
			_ = syscall.Kill(pid, syscall.SIGCONT) // a paused node dies too
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b := poll.Backoff{Min: time.Millisecond, Max: 50 * time.Millisecond}
	for _, pid := range pids {
		for isRedisUnder(pid, root) && b.Wait(ctx) == nil {
		}
	}
	return len(pids)
}
