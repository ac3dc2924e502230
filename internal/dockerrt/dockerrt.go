// Package dockerrt runs a spec's nodes as Docker containers (runtime:
// docker), through the Docker Engine API client (github.com/moby/moby/client),
// never the docker CLI.
//
// Each node is one container of the spec's image, named
// rcluster-<name>-<dirhash>-<port>. By default it runs with host
// networking: redis-server binds the spec's host and port on the host
// itself, exactly as a process would, so the address every node announces
// (and every MOVED redirect) is <host>:<port>, reachable from the host.
// With network: bridge (network.go) the containers are on a network of the
// cluster's own instead, each node on its own IP, so that one node can be
// cut off the others. The container runs the same
// redis.conf confgen renders for processes, with daemonize no and container
// paths (confgen.RenderContainer); the host directories are mounted:
//
//	<dir>/conf              -> /etc/rcluster       read-only (the node's redis.conf)
//	<dir>/db/redis_<port>   -> /data               (nodes.conf, AOF, RDB)
//	<dir>/log               -> /var/log/rcluster   (redis_<port>.log, as for processes)
//
// The container runs as the uid:gid of the rcluster process, not as the
// image's user (999 in the official and the e2e images): the mounted
// directories are the caller's, mode 0700, so this is what makes them
// writable without chown or root, and keeps every file the node writes owned
// by the caller (`down --purge` can delete them). The image's entrypoint
// gets the config path as its only argument: the official image's entrypoint
// prepends redis-server to an argument ending in .conf (and does not chown
// or switch user when not started as root), and rcluster's e2e image's
// entrypoint is redis-server itself.
//
// Containers carry labels (LabelCluster, LabelDir, LabelPort, LabelHost);
// the spec's absolute state dir identifies a cluster's containers, so two
// clusters of the same name in different directories never touch each
// other's. rcluster acts only on containers carrying the spec's labels,
// never on another container that happens to have the name it would use.
//
// Every request to the engine has its own deadline (Options.CallTimeout), so
// a hung engine fails an operation, naming the container and the request,
// instead of hanging rcluster. Besides whole-cluster Start and Stop, single
// nodes can be killed, stopped, started, paused and unpaused (node.go),
// and with network: bridge partitioned and healed (network.go). Host
// networking leaves no Docker network to cut a node off from, so there
// Partition and Heal fail with ErrPartitionUnsupported.
package dockerrt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/confgen"
	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
)

// Labels on every container rcluster creates.
const (
	LabelCluster = "rcluster.cluster" // spec name
	LabelDir     = "rcluster.dir"     // absolute state dir: identifies the cluster
	LabelPort    = "rcluster.port"    // client port
	LabelHost    = "rcluster.host"    // host the node binds
)

// Options tune the runtime.
type Options struct {
	Conn redisconn.Options
	// Ready bounds how long a started node may take to answer PING
	// (default 30s).
	Ready time.Duration
	// Grace bounds how long Stop waits for a node to exit after SHUTDOWN
	// before it stops the container (default 10s); the engine sends SIGKILL
	// 3s after its SIGTERM.
	Grace time.Duration
	// CallTimeout bounds each request to the Docker engine (default 10s),
	// so a hung engine fails the operation, naming the container and the
	// request, instead of hanging rcluster. A request that waits inside the
	// engine on purpose gets that wait on top (docker stop's 3s grace); an
	// image pull has PullTimeout instead.
	CallTimeout time.Duration
	// PullTimeout bounds an image pull, download included (default 5m).
	PullTimeout time.Duration
	// Log receives progress lines such as image pulls (may be nil).
	Log io.Writer
}

func (o Options) withDefaults() Options {
	if o.Ready <= 0 {
		o.Ready = 30 * time.Second
	}
	if o.Grace <= 0 {
		o.Grace = 10 * time.Second
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 10 * time.Second
	}
	if o.PullTimeout <= 0 {
		o.PullTimeout = 5 * time.Minute
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return o
}

// Runtime runs one spec's nodes as containers.
type Runtime struct {
	Spec *spec.Spec
	o    Options
	cli  *client.Client
	// netMu serializes creating and removing the cluster's network
	// (network: bridge), which nodes started one by one share.
	netMu sync.Mutex
}

// New connects to the Docker engine (DOCKER_HOST and friends, else the
// local socket) and checks that it answers.
func New(ctx context.Context, s *spec.Spec, o Options) (*Runtime, error) {
	o = o.withDefaults()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if _, err := engine(ctx, o.CallTimeout, "ping", func(ctx context.Context) (client.PingResult, error) {
		return cli.Ping(ctx, client.PingOptions{})
	}); err != nil {
		cli.Close()
		return nil, fmt.Errorf("runtime docker: cannot reach the Docker engine at %s (is Docker running, and may this user use it?): %w", cli.DaemonHost(), err)
	}
	return &Runtime{Spec: s, o: o, cli: cli}, nil
}

// Close releases the engine connection.
func (r *Runtime) Close() error { return r.cli.Close() }

// ContainerName is node port's container name:
// rcluster-<name>-<first 8 hex of sha256(dir)>-<port>.
func ContainerName(s *spec.Spec, port int) string {
	return fmt.Sprintf("rcluster-%s-%s-%d", s.Name, dirHash(s.Dir), port)
}

func dirHash(dir string) string {
	h := sha256.Sum256([]byte(dir))
	return hex.EncodeToString(h[:4])
}

// Labels are the labels of node n's container.
func Labels(s *spec.Spec, n spec.Node) map[string]string {
	return map[string]string{
		LabelCluster: s.Name,
		LabelDir:     s.Dir,
		LabelPort:    strconv.Itoa(n.Port),
		LabelHost:    n.Host,
	}
}

// NodeState is a node's container as Inspect found it.
type NodeState struct {
	Node      spec.Node
	Container string // name
	ID        string // empty when there is no container
	Running   bool
	// Paused: the container runs but is frozen (docker pause, see Pause).
	Paused bool
	// Partitioned: the container runs but is cut off the cluster's
	// network (network: bridge, see Partition).
	Partitioned bool
	// Responding is true when the node answered PING at its address.
	Responding bool
	Pid        int // the container's main process, as the host sees it
	// Detail explains a node that is not running or not responding.
	Detail string
}

// owned lists every container (any state) labelled with the spec's dir.
func (r *Runtime) owned(ctx context.Context) ([]container.Summary, error) {
	f := make(client.Filters).Add("label", LabelDir+"="+r.Spec.Dir)
	res, err := engine(ctx, r.o.CallTimeout, "list containers of "+r.Spec.Dir, func(ctx context.Context) (client.ContainerListResult, error) {
		return r.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	})
	if err != nil {
		return nil, err
	}
	return res.Items, nil
}

// inspect reads container ref (a name or an ID), called name in errors.
func (r *Runtime) inspect(ctx context.Context, ref, name string) (container.InspectResponse, error) {
	res, err := engine(ctx, r.o.CallTimeout, "container "+name+": inspect", func(ctx context.Context) (client.ContainerInspectResult, error) {
		return r.cli.ContainerInspect(ctx, ref, client.ContainerInspectOptions{})
	})
	return res.Container, err
}

// remove removes container ref, called name in errors; force also kills it
// when it runs. A container that is already gone is fine.
func (r *Runtime) remove(ctx context.Context, ref, name string, force bool) error {
	_, err := engine(ctx, r.o.CallTimeout, "container "+name+": remove", func(ctx context.Context) (client.ContainerRemoveResult, error) {
		return r.cli.ContainerRemove(ctx, ref, client.ContainerRemoveOptions{Force: force})
	})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// ours reports whether labels are node n's labels of this spec (cluster
// name, state dir and port). A container without them is not rcluster's to
// touch, even when it has the name rcluster would give it.
func (r *Runtime) ours(labels map[string]string, n spec.Node) bool {
	return labels[LabelCluster] == r.Spec.Name && labels[LabelDir] == r.Spec.Dir && labels[LabelPort] == strconv.Itoa(n.Port)
}

// nodeContainer finds node n's container by name; found is false when
// there is none. A container of that name without this spec's labels for n
// is an error: rcluster never acts on it.
func (r *Runtime) nodeContainer(ctx context.Context, n spec.Node) (c container.InspectResponse, found bool, err error) {
	name := ContainerName(r.Spec, n.Port)
	c, err = r.inspect(ctx, name, name)
	if cerrdefs.IsNotFound(err) {
		return c, false, nil
	}
	if err != nil {
		return c, false, err
	}
	if c.Config == nil || !r.ours(c.Config.Labels, n) {
		return c, false, fmt.Errorf("container %s exists but is not this cluster's (it lacks the labels %s=%s, %s=%d); rcluster leaves it alone", name, LabelDir, r.Spec.Dir, LabelPort, n.Port)
	}
	if c.State == nil {
		return c, false, fmt.Errorf("container %s has no state", name)
	}
	return c, true, nil
}

// Inspect reports every spec node's container, in spec order.
func (r *Runtime) Inspect(ctx context.Context) ([]NodeState, error) {
	cs, err := r.owned(ctx)
	if err != nil {
		return nil, err
	}
	byPort := map[string]container.Summary{}
	for _, c := range cs {
		byPort[c.Labels[LabelPort]] = c
	}
	nodes := r.Spec.Nodes()
	out := make([]NodeState, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		out[i] = NodeState{Node: n, Container: ContainerName(r.Spec, n.Port), Detail: "no container"}
		c, ok := byPort[strconv.Itoa(n.Port)]
		if !ok {
			continue
		}
		wg.Go(func() { r.inspectOne(ctx, c.ID, &out[i]) })
	}
	wg.Wait()
	return out, nil
}

func (r *Runtime) inspectOne(ctx context.Context, id string, ns *NodeState) {
	ns.ID = id
	c, err := r.inspect(ctx, id, ns.Container)
	if err != nil {
		ns.Detail = err.Error()
		return
	}
	st := c.State
	if st == nil {
		ns.Detail = "container " + ns.Container + " has no state"
		return
	}
	ns.Running, ns.Pid = st.Running, st.Pid
	if !st.Running {
		ns.Detail = describeStopped(ns.Container, st)
		return
	}
	if st.Paused {
		ns.Paused, ns.Detail = true, "container "+ns.Container+" is paused"
		return
	}
	if r.cutOff(c) {
		ns.Partitioned, ns.Detail = true, fmt.Sprintf("container %s is cut off network %s (partitioned; heal reconnects it)", ns.Container, NetworkName(r.Spec))
		return
	}
	if err := ping(ctx, ns.Node, r.o.Conn); err != nil {
		ns.Detail = "not responding: " + err.Error()
		return
	}
	ns.Responding, ns.Detail = true, ""
}

func describeStopped(name string, st *container.State) string {
	d := fmt.Sprintf("container %s is %s", name, st.Status)
	if st.Status == container.StateExited || st.Status == container.StateDead {
		d += fmt.Sprintf(" (exit code %d", st.ExitCode)
		if st.OOMKilled {
			d += ", out of memory"
		}
		d += ")"
	}
	if st.Error != "" {
		d += ": " + st.Error
	}
	return d
}

func ping(ctx context.Context, n spec.Node, conn redisconn.Options) error {
	c := conn.Node(n.Addr())
	defer c.Close()
	return c.Ping(ctx).Err()
}

// EnsureImage makes sure the spec's image is present, pulling it only when
// it is missing locally; a failed pull is reported as such.
func (r *Runtime) EnsureImage(ctx context.Context) error {
	img := r.Spec.Image
	_, err := engine(ctx, r.o.CallTimeout, "image "+img+": inspect", func(ctx context.Context) (client.ImageInspectResult, error) {
		return r.cli.ImageInspect(ctx, img)
	})
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return err
	}
	fmt.Fprintf(r.o.Log, "image %s is not present locally; pulling it\n", img)
	start := time.Now()
	_, err = engine(ctx, r.o.PullTimeout, "pull", func(ctx context.Context) (struct{}, error) {
		resp, err := r.cli.ImagePull(ctx, img, client.ImagePullOptions{})
		if err != nil {
			return struct{}{}, err
		}
		defer resp.Close()
		return struct{}{}, resp.Wait(ctx)
	})
	if err != nil {
		return fmt.Errorf("image %s is not present locally and pulling it failed: %w (build or load it, or set image: in the spec to one that is present)", img, err)
	}
	fmt.Fprintf(r.o.Log, "pulled %s in %v\n", img, time.Since(start).Round(time.Millisecond))
	return nil
}

// WriteConfigs renders every node's container config into the state dir
// (creating the layout).
func (r *Runtime) WriteConfigs() error {
	_, err := confgen.WriteContainer(r.Spec)
	return err
}

// checkFree fails when something on the host already listens on the node's
// port or bus port (with host networking the container would fail to bind).
// With network: bridge every node has a network namespace of its own, and
// nothing on the host can take its ports.
func (r *Runtime) checkFree(n spec.Node) error {
	if r.Spec.IsBridge() {
		return nil
	}
	return checkFree(n)
}

func checkFree(n spec.Node) error {
	var busy []string
	for _, p := range []int{n.Port, n.BusPort()} {
		l, err := net.Listen("tcp", net.JoinHostPort(n.Host, strconv.Itoa(p)))
		if err != nil {
			busy = append(busy, fmt.Sprintf("port %d is in use on the host (%v)", p, errors.Unwrap(err)))
			continue
		}
		l.Close()
	}
	if len(busy) > 0 {
		return fmt.Errorf("node %s: %s", n.Addr(), strings.Join(busy, "; "))
	}
	return nil
}

// Start creates and starts a container for every node (in parallel) and
// returns when all answer PING. Existing containers of these nodes that are
// not running are removed first (their data stays in the state dir). Before
// anything is created every port and bus port must be free, and with
// network: bridge the cluster's network exists. On failure the containers
// this call created are removed (and the network, when no container is
// left) and the error names each failed node with its logs.
func (r *Runtime) Start(ctx context.Context, nodes []spec.Node) error {
	var errs []error
	for _, n := range nodes {
		if err := r.checkFree(n); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if r.Spec.IsBridge() {
		if _, err := r.ensureNetwork(ctx); err != nil {
			return err
		}
	}
	ids := make([]string, len(nodes))
	errs = make([]error, len(nodes))
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			ids[i], errs[i] = r.startOne(sctx, n)
			if errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	var failed []error
	for _, e := range errs {
		if e != nil && !errors.Is(e, context.Canceled) {
			failed = append(failed, e)
		}
	}
	if err := ctx.Err(); err != nil {
		failed = append(failed, fmt.Errorf("start containers: %w", err))
	}
	if len(failed) == 0 {
		return nil
	}
	// The containers are removed even when ctx has ended (each request is
	// still bounded by CallTimeout).
	rctx := context.WithoutCancel(ctx)
	rerrs := make([]error, len(nodes))
	for i, id := range ids {
		if id == "" {
			continue
		}
		wg.Go(func() {
			if err := r.remove(rctx, id, ContainerName(r.Spec, nodes[i].Port), true); err != nil {
				rerrs[i] = fmt.Errorf("node %s: %w", nodes[i].Addr(), err)
			}
		})
	}
	wg.Wait()
	failed = append(failed, rerrs...)
	if r.Spec.IsBridge() {
		failed = append(failed, r.removeNetworks(rctx))
	}
	return errors.Join(failed...)
}

// startOne creates and starts node n's container and waits for PING. It
// returns the container ID whenever a container was created.
func (r *Runtime) startOne(ctx context.Context, n spec.Node) (string, error) {
	s := r.Spec
	name := ContainerName(s, n.Port)
	if err := r.removeIfStopped(ctx, n); err != nil {
		return "", fmt.Errorf("start node %s: %w", n.Addr(), err)
	}
	cfg := &container.Config{
		Image:  s.Image,
		Cmd:    []string{confgen.ContainerConfFile(n.Port)},
		User:   fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid()),
		Labels: Labels(s, n),
	}
	hc := &container.HostConfig{
		NetworkMode: network.NetworkHost,
		Binds: []string{
			s.ConfDir() + ":" + confgen.ContainerConfDir + ":ro",
			s.DataDir(n.Port) + ":" + confgen.ContainerDataDir,
			s.LogDir() + ":" + confgen.ContainerLogDir,
		},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
	}
	// TLS files are mounted read-only at their host paths, so the config
	// names the same files inside the container.
	for _, f := range tlsPaths(s) {
		hc.Binds = append(hc.Binds, f+":"+f+":ro")
	}
	var nc *network.NetworkingConfig
	if s.IsBridge() {
		hc.NetworkMode = container.NetworkMode(NetworkName(s))
		nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{NetworkName(s): r.endpointConfig(n)}}
	}
	created, err := engine(ctx, r.o.CallTimeout, "container "+name+": create from "+s.Image, func(ctx context.Context) (client.ContainerCreateResult, error) {
		return r.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: hc, NetworkingConfig: nc, Name: name})
	})
	if err != nil {
		return "", fmt.Errorf("start node %s: %w", n.Addr(), err)
	}
	id := created.ID
	if err := r.run(ctx, id, n); err != nil {
		return id, fmt.Errorf("start node %s: %w", n.Addr(), err)
	}
	return id, nil
}

// run starts node n's existing container id and waits for PING; an error
// carries the container's output and log tail.
func (r *Runtime) run(ctx context.Context, id string, n spec.Node) error {
	name := ContainerName(r.Spec, n.Port)
	if _, err := engine(ctx, r.o.CallTimeout, "container "+name+": start", func(ctx context.Context) (client.ContainerStartResult, error) {
		return r.cli.ContainerStart(ctx, id, client.ContainerStartOptions{})
	}); err != nil {
		return fmt.Errorf("%w%s", err, r.logs(ctx, id, n))
	}
	if err := r.waitReady(ctx, id, n); err != nil {
		return fmt.Errorf("container %s: %w%s", name, err, r.logs(ctx, id, n))
	}
	return nil
}

// removeIfStopped removes node n's container unless it runs; one without
// the spec's labels is an error, never removed.
func (r *Runtime) removeIfStopped(ctx context.Context, n spec.Node) error {
	c, found, err := r.nodeContainer(ctx, n)
	if err != nil || !found {
		return err
	}
	name := ContainerName(r.Spec, n.Port)
	if c.State.Running {
		return fmt.Errorf("container %s is already running", name)
	}
	return r.remove(ctx, c.ID, name, false)
}

// waitReady polls until the node answers PING, failing early when its
// container stops.
func (r *Runtime) waitReady(parent context.Context, id string, n spec.Node) error {
	ctx, cancel := context.WithTimeout(parent, r.o.Ready)
	defer cancel()
	name := ContainerName(r.Spec, n.Port)
	var last error
	for b := (&poll.Backoff{}); ; {
		if last = ping(ctx, n, r.o.Conn); last == nil {
			return nil
		}
		c, err := r.inspect(ctx, id, name)
		if err == nil && c.State != nil && !c.State.Running {
			return errors.New(describeStopped(name, c.State))
		}
		if b.Wait(ctx) != nil {
			if err := parent.Err(); err != nil {
				return fmt.Errorf("waiting for PING: %w", err)
			}
			return fmt.Errorf("not answering PING after %s: %v", r.o.Ready, last)
		}
	}
}

// logs returns, for an error message, the tail of the container's output
// (config errors go to stderr before the log file is open) and of the
// node's log file. They are read even when ctx has ended: they explain the
// failure.
func (r *Runtime) logs(ctx context.Context, id string, n spec.Node) string {
	var b strings.Builder
	out, _ := engine(context.WithoutCancel(ctx), r.o.CallTimeout, "logs", func(ctx context.Context) (string, error) {
		rc, err := r.cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "12"})
		if err != nil {
			return "", err
		}
		defer rc.Close()
		var out strings.Builder
		_, err = stdcopy.StdCopy(&out, &out, io.LimitReader(rc, 64<<10))
		return out.String(), err
	})
	if t := strings.TrimSpace(out); t != "" {
		b.WriteString("\n  container output:" + indent(t))
	}
	if t := tailFile(r.Spec.LogFile(n.Port), 12); t != "" {
		b.WriteString("\n  last lines of " + r.Spec.LogFile(n.Port) + ":" + indent(t))
	}
	return b.String()
}

func tailFile(path string, lines int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-4096, 0)
	data, _ := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	ls := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if off > 0 && len(ls) > 0 {
		ls = ls[1:]
	}
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.TrimSpace(strings.Join(ls, "\n"))
}

func indent(s string) string { return "\n    " + strings.ReplaceAll(s, "\n", "\n    ") }

// Remove force-removes the containers of the given nodes (used to undo a
// failed up): only containers labelled with this spec's dir and the node's
// port; missing containers are fine. The cluster's network goes with the
// last container.
func (r *Runtime) Remove(ctx context.Context, nodes []spec.Node) error {
	cs, err := r.owned(ctx)
	if err != nil {
		return err
	}
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		for _, n := range nodes {
			if !r.ours(c.Labels, n) {
				continue
			}
			wg.Go(func() {
				if err := r.remove(ctx, c.ID, ContainerName(r.Spec, n.Port), true); err != nil {
					errs[i] = fmt.Errorf("node %s: %w", n.Addr(), err)
				}
			})
			break
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return r.removeNetworks(ctx)
}

// StopResult is what Stop did to one container.
type StopResult struct {
	Addr      string // host:port from the container's labels
	Container string
	// Action: "shutdown" (SHUTDOWN, exited), "stop" (the engine's SIGTERM,
	// SIGKILL), "removed" (Stop: it was not running), "not running"
	// (StopNode: left as it was).
	Action string
	Detail string
	Err    error
}

// Stop stops and removes every container of the spec's dir, including
// nodes the spec no longer lists: SHUTDOWN through the client port (so the
// AOF is flushed), then, if the node has not exited within Grace, the
// engine's stop (SIGTERM, SIGKILL after 3s); then the container is removed,
// and with the last one the cluster's network (network: bridge). Data stays
// in the state dir. The returned error joins every failure.
func (r *Runtime) Stop(ctx context.Context) ([]StopResult, error) {
	cs, err := r.owned(ctx)
	if err != nil {
		return nil, err
	}
	res := make([]StopResult, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { res[i] = r.stopOne(ctx, c) })
	}
	wg.Wait()
	var errs []error
	for _, x := range res {
		if x.Err != nil {
			errs = append(errs, x.Err)
		}
	}
	if len(errs) == 0 {
		errs = append(errs, r.removeNetworks(ctx))
	}
	return res, errors.Join(errs...)
}

func (r *Runtime) stopOne(ctx context.Context, c container.Summary) StopResult {
	name := strings.TrimPrefix(firstOr(c.Names, c.ID), "/")
	port, _ := strconv.Atoi(c.Labels[LabelPort])
	n := spec.Node{Host: c.Labels[LabelHost], Port: port}
	res := StopResult{Addr: n.Addr(), Container: name, Action: "removed"}
	if c.State == container.StateRunning || c.State == container.StatePaused || c.State == container.StateRestarting {
		cut := r.Spec.IsBridge() && (c.NetworkSettings == nil || c.NetworkSettings.Networks[NetworkName(r.Spec)] == nil)
		if res = r.halt(ctx, c.ID, name, n, c.State == container.StatePaused, cut); res.Err != nil {
			return res
		}
	}
	if err := r.remove(ctx, c.ID, name, true); err != nil {
		res.Err = fmt.Errorf("stop node %s: %w", n.Addr(), err)
	}
	return res
}

// halt ends node n in its running container id (called name) gracefully
// and returns once the container no longer runs: SHUTDOWN through the client
// port (so the AOF is flushed), then, if the node refused or has not exited
// within Grace, the engine's stop (SIGTERM, SIGKILL after 3s). A paused
// container is unpaused first: a frozen node cannot answer SHUTDOWN. A
// node cut off the network (cut) cannot be reached either: the engine's
// SIGTERM stops it, which redis-server handles as a SHUTDOWN.
func (r *Runtime) halt(ctx context.Context, id, name string, n spec.Node, paused, cut bool) StopResult {
	res := StopResult{Addr: n.Addr(), Container: name, Action: "shutdown"}
	if paused {
		// A failure shows below: SHUTDOWN goes unanswered and the
		// engine's stop follows.
		_, _ = engine(ctx, r.o.CallTimeout, "container "+name+": unpause", func(ctx context.Context) (client.ContainerUnpauseResult, error) {
			return r.cli.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
		})
	}
	var why []string
	if cut {
		why = append(why, "cut off the network, so no SHUTDOWN")
	} else {
		sctx, cancel := context.WithTimeout(ctx, r.o.Grace)
		err := shutdown(sctx, n, r.o.Conn)
		var rerr redis.Error
		if errors.As(err, &rerr) {
			why = append(why, "SHUTDOWN refused: "+err.Error())
		} else if werr := r.waitStopped(sctx, id, name); werr != nil {
			why = append(why, fmt.Sprintf("still running %s after SHUTDOWN", r.o.Grace))
		}
		cancel()
	}
	if len(why) == 0 {
		return res
	}
	res.Action, res.Detail = "stop", strings.Join(why, "; ")
	const grace = 3 // seconds between the engine's SIGTERM and SIGKILL
	timeout := grace
	if _, err := engine(ctx, r.o.CallTimeout+grace*time.Second, "container "+name+": stop", func(ctx context.Context) (client.ContainerStopResult, error) {
		return r.cli.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &timeout})
	}); err != nil && !cerrdefs.IsNotFound(err) {
		res.Err = fmt.Errorf("stop node %s (container %s): %s; %w", n.Addr(), name, res.Detail, err)
	}
	return res
}

func firstOr(names []string, def string) string {
	if len(names) > 0 {
		return names[0]
	}
	return def
}

// shutdown sends SHUTDOWN; a dropped connection is the expected answer.
func shutdown(ctx context.Context, n spec.Node, conn redisconn.Options) error {
	c := conn.Node(n.Addr())
	defer c.Close()
	err := c.Shutdown(ctx).Err()
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return err
	}
	return nil
}

// waitStopped polls until container id (called name) no longer runs.
func (r *Runtime) waitStopped(ctx context.Context, id, name string) error {
	for b := (&poll.Backoff{}); ; {
		c, err := r.inspect(ctx, id, name)
		if cerrdefs.IsNotFound(err) || (err == nil && c.State != nil && !c.State.Running) {
			return nil
		}
		if err := b.Wait(ctx); err != nil {
			return err
		}
	}
}

// tlsPaths are the distinct TLS files a node reads (none without tls:).
func tlsPaths(s *spec.Spec) []string {
	if s.TLS == nil {
		return nil
	}
	f := s.TLSFiles()
	var out []string
	for _, p := range []string{f.Cert, f.Key, f.CA, f.ClientCert, f.ClientKey} {
		if p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}
