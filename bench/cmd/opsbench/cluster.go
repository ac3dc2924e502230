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

// The cluster every benchmark works on: 3 masters with one replica each,
// the shape issue 13's figures are about.
const (
	clusterNodes   = 6
	clusterMasters = 3
)

// benchCluster is one cluster made by `rcluster up` of a spec the harness
// wrote into a temp dir of its own, on a port block held through
// internal/portblock (the integration tests' locks, so a bench beside
// `go test` never takes their ports).
type benchCluster struct {
	cfg         *config
	root        string // temp dir: the spec, rcluster's state, command logs
	spec        string
	base        int
	nodeTimeout time.Duration
	release     func()
	started     bool // up was attempted: close must bring it down
	clients     map[string]*redis.Client
	elections   elections
	seq         int // numbers the command logs
}

// newCluster reserves a port block and writes the spec; nothing runs yet.
func newCluster(cfg *config, name string, nodeTimeout time.Duration) (*benchCluster, error) {
	base, release, err := portblock.Reserve(clusterNodes)
	if err != nil {
		return nil, fmt.Errorf("ports for %d nodes: %w", clusterNodes, err)
	}
	root, err := os.MkdirTemp("", "opsbench-")
	if err != nil {
		release()
		return nil, err
	}
	c := &benchCluster{cfg: cfg, root: root, spec: filepath.Join(root, "cluster.yaml"), base: base,
		nodeTimeout: nodeTimeout, release: release, clients: map[string]*redis.Client{}}
	if err := os.WriteFile(c.spec, []byte(specYAML(name, base, filepath.Join(root, "state"), nodeTimeout)), 0o600); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// specYAML is the spec of the benchmarks' cluster: 6 nodes, 1 replica per
// master, the given cluster-node-timeout.
func specYAML(name string, base int, dir string, nodeTimeout time.Duration) string {
	return fmt.Sprintf("name: %s\nhost: 127.0.0.1\nports: \"%d-%d\"\nreplicas: 1\ndir: %s\nconfig:\n  cluster-node-timeout: %d\n",
		name, base, base+clusterNodes-1, dir, nodeTimeout.Milliseconds())
}

func (c *benchCluster) ports() string { return fmt.Sprintf("%d-%d", c.base, c.base+clusterNodes-1) }

func (c *benchCluster) addr(i int) string { return "127.0.0.1:" + strconv.Itoa(c.base+i) }

func (c *benchCluster) addrs() []string {
	out := make([]string, clusterNodes)
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
// time, from just before the process is started to its exit. Output goes
// to files, not pipes: daemons rcluster starts must not hold a pipe open
// that Wait would wait for. A failure carries the stderr tail.
func (c *benchCluster) rcl(ctx context.Context, args ...string) ([]byte, time.Duration, error) {
	c.seq++
	stem := filepath.Join(c.root, fmt.Sprintf("%03d-%s", c.seq, strings.Join(args[:min(2, len(args))], "-")))
	outF, err := os.Create(stem + ".out")
	if err != nil {
		return nil, 0, err
	}
	defer outF.Close()
	errF, err := os.Create(stem + ".err")
	if err != nil {
		return nil, 0, err
	}
	defer errF.Close()
	// -f right after the command word: rcluster (at 62840b1) ignores a
	// short -f given after a NODE argument and falls back to the default
	// spec.
	argv := append([]string{args[0], "-f", c.spec}, args[1:]...)
	cmd := exec.CommandContext(ctx, c.cfg.rcluster, argv...)
	cmd.Stdout, cmd.Stderr = outF, errF
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C reaches the harness only
	cmd.WaitDelay = 2 * time.Second
	t0 := time.Now()
	err = cmd.Run()
	took := time.Since(t0)
	out, _ := os.ReadFile(stem + ".out")
	if err != nil {
		msg, _ := os.ReadFile(stem + ".err")
		if len(msg) > 1500 {
			msg = msg[len(msg)-1500:]
		}
		return out, took, fmt.Errorf("rcluster %s: %w\n%s", strings.Join(args, " "), err, bytes.TrimSpace(msg))
	}
	return out, took, nil
}

// pidfile is where rcluster's process runtime records the pid of the node
// on port.
func (c *benchCluster) pidfile(port int) string {
	return filepath.Join(c.root, "state", "run", "redis_"+strconv.Itoa(port)+".pid")
}

// provenPid is the pid of the redis-server serving port, proven three
// ways before the hand path may signal it: its pidfile in this cluster's
// state dir names it, it is a redis-server working under the temp dir, and
// the node on the port reports it as its process_id.
func (c *benchCluster) provenPid(ctx context.Context, port int) (int, error) {
	b, err := os.ReadFile(c.pidfile(port))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pidfile %s: bad pid %q", c.pidfile(port), b)
	}
	if !isRedisUnder(pid, c.root) {
		return 0, fmt.Errorf("pid %d of %s is not a redis-server under %s", pid, c.pidfile(port), c.root)
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
