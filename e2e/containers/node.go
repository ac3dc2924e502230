package containers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	tclog "github.com/testcontainers/testcontainers-go/log"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

// ReadyLog is the line redis-server logs once it accepts connections.
const ReadyLog = "Ready to accept connections"

// DefaultArgs are the redis-server arguments every node starts with; extra
// arguments (WithArgs) come after them, and a later directive wins.
var DefaultArgs = []string{
	"--port", strconv.Itoa(RedisPort),
	"--cluster-enabled", "yes",
	"--cluster-config-file", "nodes.conf",
	"--cluster-node-timeout", "2000",
	"--protected-mode", "no",
	"--appendonly", "yes",
	"--repl-diskless-sync-delay", "0",
	"--loglevel", "notice",
}

type config struct {
	image          string
	args           []string
	labels         map[string]string
	startupTimeout time.Duration
	stopTimeout    time.Duration
}

func defaultConfig() config {
	return config{
		image:          DefaultImage,
		labels:         map[string]string{},
		startupTimeout: 30 * time.Second,
		stopTimeout:    10 * time.Second,
	}
}

// Option configures StartRedisNodes.
type Option func(*config)

// WithImage uses image instead of DefaultImage (built by EnsureImage if
// missing).
func WithImage(image string) Option { return func(c *config) { c.image = image } }

// WithArgs appends redis-server arguments after DefaultArgs.
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// WithLabels adds container labels (keys must not start with
// org.testcontainers).
func WithLabels(labels map[string]string) Option {
	return func(c *config) { maps.Copy(c.labels, labels) }
}

// WithStartupTimeout bounds the wait for ReadyLog on every (re)start.
// Default 30s.
func WithStartupTimeout(d time.Duration) Option { return func(c *config) { c.startupTimeout = d } }

// WithStopTimeout is how long Stop waits after SIGTERM before SIGKILL.
// Default 10s.
func WithStopTimeout(d time.Duration) Option { return func(c *config) { c.stopTimeout = d } }

// Node is one redis-server container with a fixed address on its Network.
type Node struct {
	Name      string // container name
	Container *testcontainers.DockerContainer
	IP        netip.Addr // address on Network, kept across restarts
	Port      int        // client port, RedisPort
	Addr      string     // "IP:Port", reachable from the host
	Network   *Network

	cfg    config
	mu     sync.Mutex
	starts int // how many times ReadyLog is expected in the log
}

// Addrs returns the nodes' "ip:port" addresses.
func Addrs(nodes []*Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Addr
	}
	return out
}

// StartRedisNodes starts n cluster-enabled redis-server containers on nw in
// parallel, each with its own fixed IP, and waits until each has logged
// ReadyLog. The image is built first if missing (EnsureImage). Containers are
// removed at cleanup even when the test fails; their log tails are written to
// the test log when it failed.
func StartRedisNodes(ctx context.Context, t testing.TB, nw *Network, n int, opts ...Option) []*Node {
	t.Helper()
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	EnsureImage(t, cfg.image)
	id := testID(t)

	nodes := make([]*Node, n)
	errs := make([]error, n)
	for i := range nodes {
		ip, err := nw.allocIP()
		if err != nil {
			t.Fatalf("start redis nodes: %v", err)
		}
		nodes[i] = &Node{
			Name:    fmt.Sprintf("rcluster-e2e-%s-%s", nw.Name[:8], strings.ReplaceAll(ip.String(), ".", "-")),
			IP:      ip,
			Port:    RedisPort,
			Addr:    netip.AddrPortFrom(ip, RedisPort).String(),
			Network: nw,
			cfg:     cfg,
		}
	}

	start := time.Now()
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = nd.run(ctx, t, id)
		}()
	}
	wg.Wait()
	// Registered here, on the test goroutine, for every container that
	// exists, whatever happened to the others. Cleanups run last-in
	// first-out: log tails (on failure) first, then removal, in parallel.
	t.Cleanup(func() { terminateAll(t, nodes) })
	t.Cleanup(func() {
		if t.Failed() {
			for _, nd := range nodes {
				if nd.Container != nil {
					t.Logf("log tail of %s (%s):\n%s", nd.Name, nd.Addr, nd.logTail(30))
				}
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("start %d redis nodes: %v", n, err)
	}
	t.Logf("started %d redis containers on %s in %v", n, nw.Subnet, time.Since(start).Round(time.Millisecond))
	return nodes
}

// terminateAll kills and removes the nodes' containers in parallel (nil
// containers and already removed ones are fine).
func terminateAll(t testing.TB, nodes []*Node) {
	t.Helper()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if nd.Container != nil {
				errs[i] = testcontainers.TerminateContainer(nd.Container, testcontainers.StopTimeout(0))
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Errorf("remove redis containers: %v", err)
	}
}

func (nd *Node) run(ctx context.Context, t testing.TB, id string) error {
	nwName := nd.Network.Name
	labels := map[string]string{Label: "true", TestLabel: id}
	maps.Copy(labels, nd.cfg.labels)
	labels[Label] = "true"
	labels[TestLabel] = id
	args := append(append([]string{}, DefaultArgs...), nd.cfg.args...)
	nd.starts = 1
	c, err := testcontainers.Run(ctx, nd.cfg.image,
		testcontainers.WithName(nd.Name),
		testcontainers.WithCmd(args...),
		testcontainers.WithLabels(labels),
		tcnetwork.WithNetwork(nil, nd.Network.DockerNetwork),
		testcontainers.WithEndpointSettingsModifier(func(m map[string]*network.EndpointSettings) {
			es := m[nwName]
			if es == nil {
				es = &network.EndpointSettings{}
				m[nwName] = es
			}
			es.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: nd.IP}
		}),
		testcontainers.WithWaitStrategy(nd.readyStrategy(1)),
		testcontainers.WithLogger(tclog.TestLogger(t)),
	)
	nd.Container = c
	if err != nil {
		return fmt.Errorf("node %s: %w", nd.Addr, err)
	}
	if err := nd.checkIP(ctx); err != nil {
		return err
	}
	return nil
}

func (nd *Node) readyStrategy(occurrence int) wait.Strategy {
	return wait.ForLog(ReadyLog).WithOccurrence(occurrence).
		WithPollInterval(50 * time.Millisecond).WithStartupTimeout(nd.cfg.startupTimeout)
}

// checkIP verifies the container got the address it was given.
func (nd *Node) checkIP(ctx context.Context) error {
	insp, err := nd.Container.Inspect(ctx)
	if err != nil {
		return fmt.Errorf("node %s: inspect: %w", nd.Addr, err)
	}
	es := insp.NetworkSettings.Networks[nd.Network.Name]
	if es == nil {
		return fmt.Errorf("node %s: not attached to network %s", nd.Addr, nd.Network.Name)
	}
	if es.IPAddress != nd.IP {
		return fmt.Errorf("node %s: container has IP %v on %s", nd.Addr, es.IPAddress, nd.Network.Name)
	}
	return nil
}

// Stop stops the container (SIGTERM, then SIGKILL after the stop timeout).
// Its data (/data: nodes.conf, AOF) stays for Start.
func (nd *Node) Stop(ctx context.Context) error {
	d := nd.cfg.stopTimeout
	if err := nd.Container.Stop(ctx, &d); err != nil {
		return fmt.Errorf("stop node %s: %w", nd.Addr, err)
	}
	return nil
}

// Start starts the stopped container again (same container, same data, same
// IP) and waits for a new ReadyLog line.
func (nd *Node) Start(ctx context.Context) error {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	// The log keeps the lines of earlier runs: wait for one more of them.
	nd.Container.WaitingFor = nd.readyStrategy(nd.starts + 1)
	if err := nd.Container.Start(ctx); err != nil {
		return fmt.Errorf("start node %s: %w", nd.Addr, err)
	}
	nd.starts++
	return nd.checkIP(ctx)
}

// Disconnect detaches the container from its network: the node keeps
// running but can reach nobody and nobody can reach it (a partition).
func (nd *Node) Disconnect(ctx context.Context) error {
	cli, err := dockerClient(ctx)
	if err != nil {
		return fmt.Errorf("disconnect node %s: %w", nd.Addr, err)
	}
	if _, err := cli.NetworkDisconnect(ctx, nd.Network.ID, client.NetworkDisconnectOptions{
		Container: nd.Container.ID}); err != nil {
		return fmt.Errorf("disconnect node %s: %w", nd.Addr, err)
	}
	return nil
}

// Reconnect attaches the container to its network again, with its IP.
func (nd *Node) Reconnect(ctx context.Context) error {
	cli, err := dockerClient(ctx)
	if err != nil {
		return fmt.Errorf("reconnect node %s: %w", nd.Addr, err)
	}
	if _, err := cli.NetworkConnect(ctx, nd.Network.ID, client.NetworkConnectOptions{
		Container: nd.Container.ID,
		EndpointConfig: &network.EndpointSettings{
			IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: nd.IP},
		},
	}); err != nil {
		return fmt.Errorf("reconnect node %s: %w", nd.Addr, err)
	}
	return nd.checkIP(ctx)
}

// Pause freezes every process of the container (cgroup freezer): TCP
// connections stay open but nothing answers, like a hung host.
func (nd *Node) Pause(ctx context.Context) error {
	cli, err := dockerClient(ctx)
	if err == nil {
		_, err = cli.ContainerPause(ctx, nd.Container.ID, client.ContainerPauseOptions{})
	}
	if err != nil {
		return fmt.Errorf("pause node %s: %w", nd.Addr, err)
	}
	return nil
}

// Unpause resumes a paused container.
func (nd *Node) Unpause(ctx context.Context) error {
	cli, err := dockerClient(ctx)
	if err == nil {
		_, err = cli.ContainerUnpause(ctx, nd.Container.ID, client.ContainerUnpauseOptions{})
	}
	if err != nil {
		return fmt.Errorf("unpause node %s: %w", nd.Addr, err)
	}
	return nil
}

// Exec runs cmd inside the container (e.g. "redis-cli", "cluster", "info",
// which works even while the node is disconnected) and returns its exit
// code and combined output.
func (nd *Node) Exec(ctx context.Context, cmd ...string) (int, string, error) {
	code, r, err := nd.Container.Exec(ctx, cmd, tcexec.Multiplexed())
	if err != nil {
		return code, "", fmt.Errorf("exec %q in node %s: %w", cmd, nd.Addr, err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return code, string(out), fmt.Errorf("exec %q in node %s: read output: %w", cmd, nd.Addr, err)
	}
	return code, string(out), nil
}

// Logs returns the container's whole log (every run).
func (nd *Node) Logs(ctx context.Context) (string, error) {
	r, err := nd.Container.Logs(ctx)
	if err != nil {
		return "", fmt.Errorf("logs of node %s: %w", nd.Addr, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return string(b), fmt.Errorf("logs of node %s: %w", nd.Addr, err)
	}
	return string(b), nil
}

func (nd *Node) logTail(lines int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := nd.Logs(ctx)
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// String returns the node's address.
func (nd *Node) String() string { return nd.Addr }
