package dockerrt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/rcluster/rcluster/e2e/containers"
	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/topology"
)

// bridgeRuntime is dockerRuntime with network: bridge and a derived
// subnet (no subnet: key), in a temporary dir whose derived /24 no
// existing Docker network overlaps, so tests running side by side do not
// collide.
func bridgeRuntime(t *testing.T, extra string) (*Runtime, []spec.Node) {
	t.Helper()
	containers.RequireDocker(t)
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cli.NetworkList(ctx, client.NetworkListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		dir := t.TempDir()
		sub := (&spec.Spec{Dir: filepath.Join(dir, "state")}).BridgeSubnet()
		free := true
		for _, n := range res.Items {
			for _, p := range subnets(n.IPAM) {
				free = free && !p.Overlaps(sub)
			}
		}
		if free && checkRoutes(sub) == nil {
			return runtimeOf(t, "network: bridge\nconfig: {cluster-node-timeout: 1000}\n"+extra, dir)
		}
	}
	t.Fatal("no state dir with a free derived subnet in 20 tries")
	return nil, nil
}

// clusterView is node a's CLUSTER NODES.
func clusterView(ctx context.Context, a string) ([]topology.Node, error) {
	c := redisconn.Options{Timeout: 300 * time.Millisecond}.Node(a)
	defer c.Close()
	s, err := c.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, err
	}
	return topology.ParseNodes(s)
}

// until polls check with short backoff until it returns nil, failing the
// test with its last error after d; it returns how long that took.
func until(ctx context.Context, t *testing.T, d time.Duration, what string, check func(context.Context) error) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	for b := (&poll.Backoff{Max: 100 * time.Millisecond}); ; {
		err := check(ctx)
		if err == nil {
			return time.Since(start)
		}
		if b.Wait(ctx) != nil {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
	}
}

// TestBridgeNetworkDocker: with network: bridge, Start creates the
// cluster's labelled network and puts every node on its fixed IP, where
// the host reaches it; Partition cuts one node off (it keeps running, no
// longer answers from the host, the others flag it failing) and Heal
// brings it back at the same address; both are idempotent. A cut-off node
// refuses StartNode, is stopped by the engine, and Heal reconnects even a
// stopped container. Stop removes the containers and then the network.
func TestBridgeNetworkDocker(t *testing.T) {
	r, nodes := bridgeRuntime(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sub := r.Spec.BridgeSubnet()
	for i, n := range nodes {
		b := sub.Addr().As4()
		if want := netip.AddrFrom4([4]byte{b[0], b[1], b[2], byte(10 + i)}).String(); n.Host != want {
			t.Fatalf("node %d at %s, want %s", i, n.Host, want)
		}
	}

	start := time.Now()
	if err := r.Start(ctx, nodes); err != nil {
		t.Fatal(err)
	}
	t.Logf("start of 3 containers on %s took %v", sub, time.Since(start).Round(time.Millisecond))
	nws := stateNetworks(ctx, t, r)
	if len(nws) != 1 || nws[0].Name != NetworkName(r.Spec) || nws[0].Labels[LabelCluster] != "dk" || !nws[0].Internal {
		t.Fatalf("networks of the state dir: %+v; want one internal network %s", nws, NetworkName(r.Spec))
	}
	if got := subnets(nws[0].IPAM); len(got) != 1 || got[0] != sub {
		t.Fatalf("network subnet %v, want %s", got, sub)
	}
	for _, n := range nodes {
		if _, st := state(ctx, t, r, n); !st.Running {
			t.Fatalf("%s not running", n)
		}
		if err := pingErr(ctx, n); err != nil {
			t.Fatalf("PING %s from the host: %v", n, err)
		}
	}
	// The nodes know each other by their container IPs.
	for _, n := range nodes[1:] {
		c := redisconn.Options{}.Node(nodes[0].Addr())
		err := c.ClusterMeet(ctx, n.Host, fmt.Sprint(n.Port)).Err()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	until(ctx, t, 20*time.Second, "3 nodes meet", func(ctx context.Context) error {
		for _, n := range nodes {
			v, err := clusterView(ctx, n.Addr())
			if err != nil {
				return err
			}
			if len(v) != 3 {
				return fmt.Errorf("%s knows %d nodes", n, len(v))
			}
			for _, x := range v {
				if x.Trouble() != "" || !x.Connected && !x.IsMyself() {
					return fmt.Errorf("%s sees %s %v", n, x.Addr, x.Flags)
				}
			}
		}
		return nil
	})

	cut := nodes[0]
	id, _ := state(ctx, t, r, cut)
	start = time.Now()
	if err := r.Partition(ctx, cut); err != nil {
		t.Fatal(err)
	}
	t.Logf("partition returned in %v", time.Since(start).Round(time.Millisecond))
	if err := pingErr(ctx, cut); err == nil {
		t.Fatalf("partitioned %s answers PING from the host", cut)
	}
	if again, st := state(ctx, t, r, cut); again != id || !st.Running {
		t.Fatalf("partitioned container %s running %v; want %s still running", again, st.Running, id)
	}
	sts, err := r.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := sts[0]; !st.Running || !st.Partitioned || st.Responding || !strings.Contains(st.Detail, "cut off network "+NetworkName(r.Spec)) {
		t.Fatalf("Inspect of the partitioned node: %+v", st)
	}
	if err := r.Partition(ctx, cut); err != nil {
		t.Fatalf("Partition of a partitioned node: %v", err)
	}
	if err := r.StartNode(ctx, cut); err == nil || !strings.Contains(err.Error(), "is cut off network") {
		t.Fatalf("StartNode of a partitioned node: %v, want a refusal", err)
	}
	took := until(ctx, t, 20*time.Second, "the others flag the cut node", func(ctx context.Context) error {
		for _, n := range nodes[1:] {
			v, err := clusterView(ctx, n.Addr())
			if err != nil {
				return err
			}
			for _, x := range v {
				if x.Addr == cut.Addr() && x.Trouble() == "" {
					return fmt.Errorf("%s sees %s as %v", n, cut, x.Flags)
				}
			}
		}
		return nil
	})
	t.Logf("the other nodes flag %s %v after the partition (cluster-node-timeout 1000)", cut, took.Round(time.Millisecond))

	start = time.Now()
	if err := r.Heal(ctx, cut); err != nil {
		t.Fatal(err)
	}
	t.Logf("heal returned in %v", time.Since(start).Round(time.Millisecond))
	if err := pingErr(ctx, cut); err != nil {
		t.Fatalf("healed %s: %v", cut, err)
	}
	if sts, err := r.Inspect(ctx); err != nil || !sts[0].Responding || sts[0].Partitioned {
		t.Fatalf("Inspect after heal: %+v, %v", sts, err)
	}
	for _, n := range nodes { // healing a connected node only waits for it
		if err := r.Heal(ctx, n); err != nil {
			t.Fatalf("Heal of connected %s: %v", n, err)
		}
	}
	took = until(ctx, t, 20*time.Second, "flags clear after heal", func(ctx context.Context) error {
		for _, n := range nodes {
			v, err := clusterView(ctx, n.Addr())
			if err != nil {
				return err
			}
			for _, x := range v {
				if x.Trouble() != "" {
					return fmt.Errorf("%s sees %s as %v", n, x.Addr, x.Flags)
				}
			}
		}
		return nil
	})
	t.Logf("flags cleared %v after heal", took.Round(time.Millisecond))

	// A cut-off node is stopped by the engine (SHUTDOWN cannot reach it),
	// healed while stopped, and starts at its address again.
	if err := r.Partition(ctx, cut); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	res, err := r.StopNode(ctx, cut)
	if err != nil || res.Action != "stop" || !strings.Contains(res.Detail, "cut off the network") {
		t.Fatalf("StopNode of a partitioned node: %+v, %v; want the engine's stop", res, err)
	}
	t.Logf("stop of the partitioned node took %v", time.Since(start).Round(time.Millisecond))
	if err := r.Heal(ctx, cut); err != nil {
		t.Fatalf("Heal of a stopped partitioned node: %v", err)
	}
	if err := r.StartNode(ctx, cut); err != nil {
		t.Fatal(err)
	}
	if err := pingErr(ctx, cut); err != nil {
		t.Fatalf("restarted %s: %v", cut, err)
	}

	// Stop removes the network with the last container, even with a node
	// cut off.
	if err := r.Partition(ctx, nodes[2]); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if left := stateNetworks(ctx, t, r); len(left) != 0 {
		t.Fatalf("networks after Stop: %+v", left)
	}
}

// TestBridgeNetworkGoesWithLastContainerDocker: Remove (undoing an up)
// keeps the network while a container is left and removes it with the
// last; a failed Start of every node (an image that is not there) removes
// the network it created.
func TestBridgeNetworkGoesWithLastContainerDocker(t *testing.T) {
	r, nodes := bridgeRuntime(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.Start(ctx, nodes[:2]); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(ctx, nodes[:1]); err != nil {
		t.Fatal(err)
	}
	if left := stateNetworks(ctx, t, r); len(left) != 1 {
		t.Fatalf("networks with one container left: %+v", left)
	}
	if err := r.Remove(ctx, nodes); err != nil {
		t.Fatal(err)
	}
	if left := stateNetworks(ctx, t, r); len(left) != 0 {
		t.Fatalf("networks after the last container was removed: %+v", left)
	}

	r.Spec.Image = "rcluster-dockerrt-no-such-image:never"
	if err := r.Start(ctx, nodes); err == nil {
		t.Fatal("Start with a missing image succeeded")
	}
	if left := stateNetworks(ctx, t, r); len(left) != 0 {
		t.Fatalf("networks after a failed Start: %+v", left)
	}
}

// TestBridgeNetworkConflictsDocker: a network of the cluster's name that
// lacks its labels is refused and left alone; a subnet another network
// uses fails Start naming that network, before any container exists.
func TestBridgeNetworkConflictsDocker(t *testing.T) {
	r, nodes := bridgeRuntime(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	other := func(name string) string {
		res, err := r.cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{
			Driver: "bridge", Internal: true,
			IPAM:   &network.IPAM{Config: []network.IPAMConfig{{Subnet: r.Spec.BridgeSubnet()}}},
			Labels: map[string]string{"rcluster.test": t.Name()},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := r.cli.NetworkRemove(ctx, res.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
				t.Errorf("remove the test's network %s: %v", name, err)
			}
		})
		return res.ID
	}

	name := NetworkName(r.Spec) + "-taken"
	id := other(name)
	err := r.Start(ctx, nodes)
	if err == nil || !strings.Contains(err.Error(), "Docker network "+name+" ("+r.Spec.BridgeSubnet().String()+")") || !strings.Contains(err.Error(), "set subnet: in the spec") {
		t.Fatalf("Start on a subnet in use: %v; want the network named and the fix", err)
	}
	if cs, err := r.owned(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("containers after a refused Start: %v, %v", cs, err)
	}
	if _, err := r.cli.NetworkRemove(ctx, id, client.NetworkRemoveOptions{}); err != nil {
		t.Fatal(err)
	}

	other(NetworkName(r.Spec))
	if err := r.Start(ctx, nodes); err == nil || !strings.Contains(err.Error(), "network "+NetworkName(r.Spec)+" exists but is not this cluster's") {
		t.Errorf("Start with a foreign network of the cluster's name: %v", err)
	}
	if _, err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.cli.NetworkInspect(ctx, NetworkName(r.Spec), client.NetworkInspectOptions{}); err != nil {
		t.Fatalf("the foreign network is gone: %v", err)
	}
}

func TestParseRoutes(t *testing.T) {
	hex := func(s string) string { // an address as the kernel prints it
		a := netip.MustParseAddr(s).As4()
		return fmt.Sprintf("%08X", binary.NativeEndian.Uint32(a[:]))
	}
	data := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth0\t00000000\t" + hex("192.0.2.1") + "\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
		"eth0\t" + hex("192.0.2.0") + "\t00000000\t0001\t0\t0\t0\t" + hex("255.255.255.0") + "\t0\t0\t0\n" +
		"wg0\t" + hex("10.8.0.0") + "\t00000000\t0001\t0\t0\t0\t" + hex("255.255.0.0") + "\t0\t0\t0\n"
	got := parseRoutes([]byte(data))
	want := []route{{"eth0", netip.MustParsePrefix("0.0.0.0/0")}, {"eth0", netip.MustParsePrefix("192.0.2.0/24")}, {"wg0", netip.MustParsePrefix("10.8.0.0/16")}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("parseRoutes = %v, want %v", got, want)
	}
}

// TestCheckRoutesRefusesAHostRoute: a subnet inside one of this host's
// routes (not the default one, not Docker's) is refused, naming it.
func TestCheckRoutesRefusesAHostRoute(t *testing.T) {
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		t.Skipf("no /proc/net/route: %v", err)
	}
	for _, rt := range parseRoutes(data) {
		if rt.dst.Bits() == 0 || rt.dst.Bits() > 30 || rt.iface == "docker0" || strings.HasPrefix(rt.iface, "br-") || rt.iface == "lo" {
			continue
		}
		sub := netip.PrefixFrom(rt.dst.Addr(), rt.dst.Bits()+1)
		err := checkRoutes(sub)
		if err == nil || !strings.Contains(err.Error(), "overlaps the host's route to "+rt.dst.String()+" on "+rt.iface) {
			t.Fatalf("checkRoutes(%s) with a route to %s on %s: %v", sub, rt.dst, rt.iface, err)
		}
		return
	}
	t.Skip("this host has no route to test with")
}

func TestHungEngineBoundsPartitionAndHeal(t *testing.T) {
	host := hungEngine(t)
	const bound = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := &spec.Spec{Name: "dev", Ports: spec.Ports{7001}, Dir: t.TempDir(), Image: "rcluster-redis:local", Runtime: spec.RuntimeDocker, Network: spec.NetworkBridge, Subnet: "172.30.7.0/24"}
	cli, err := client.New(client.WithHost(host))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	r := &Runtime{Spec: s, o: Options{CallTimeout: bound, Grace: bound, Ready: bound}.withDefaults(), cli: cli}
	n := s.Nodes()[0]
	inspect := "container " + ContainerName(s, n.Port) + ": inspect: "
	for op, f := range map[string]func(context.Context, spec.Node) error{"partition": r.Partition, "heal": r.Heal} {
		start := time.Now()
		err := f(ctx, n)
		want := "node 172.30.7.10:7001: " + op + ": " + inspect + "context deadline exceeded (Docker engine did not answer within 200ms)"
		if err == nil || err.Error() != want || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s on a hung engine: %v\nwant %s", op, err, want)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("%s on a hung engine took %v", op, took)
		}
	}
	if err := r.Start(ctx, s.Nodes()); err == nil || !strings.Contains(err.Error(), "network "+NetworkName(s)+": inspect: context deadline exceeded") {
		t.Errorf("Start on a hung engine: %v", err)
	}
}
