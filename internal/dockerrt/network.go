package dockerrt

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/spec"
)

// network: bridge. The cluster gets a bridge network of its own, named
// NetworkName and labelled like its containers (LabelCluster, LabelDir),
// with the spec's subnet (spec.BridgeSubnet); each node's container is
// attached with its fixed IP (spec.Nodes). The network is internal: it
// publishes nothing and routes nothing off the bridge, so the nodes are
// reachable from this host (its end of the bridge is the gateway, .1) and
// from each other only. A partition disconnects one container from it:
// the node keeps running, alone in its network namespace, and the others
// mark it failed after cluster-node-timeout; a heal connects it again with
// the same IP.

// NetworkName is the cluster's bridge network:
// rcluster-<name>-<first 8 hex of sha256(dir)>, its containers' prefix.
func NetworkName(s *spec.Spec) string {
	return fmt.Sprintf("rcluster-%s-%s", s.Name, dirHash(s.Dir))
}

// NetworkLabels are the labels of the cluster's network.
func NetworkLabels(s *spec.Spec) map[string]string {
	return map[string]string{LabelCluster: s.Name, LabelDir: s.Dir}
}

// ourNetwork reports whether labels are this spec's network's.
func (r *Runtime) ourNetwork(labels map[string]string) bool {
	return labels[LabelCluster] == r.Spec.Name && labels[LabelDir] == r.Spec.Dir
}

// ensureNetwork returns the ID of the cluster's network, creating it when
// it does not exist. A network of that name without this spec's labels, or
// with another subnet, is an error: rcluster neither uses nor changes it.
func (r *Runtime) ensureNetwork(ctx context.Context) (string, error) {
	r.netMu.Lock()
	defer r.netMu.Unlock()
	s := r.Spec
	name, sub := NetworkName(s), s.BridgeSubnet()
	id, found, err := r.findNetwork(ctx)
	if err != nil || found {
		return id, err
	}
	if err := checkRoutes(sub); err != nil {
		return "", fmt.Errorf("network %s: %w", name, err)
	}
	no := false
	created, err := engine(ctx, r.o.CallTimeout, "network "+name+": create with subnet "+sub.String(), func(ctx context.Context) (client.NetworkCreateResult, error) {
		return r.cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{
			Driver:     "bridge",
			Internal:   true,
			EnableIPv6: &no,
			IPAM:       &network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: sub, Gateway: s.BridgeGateway()}}},
			Labels:     NetworkLabels(s),
		})
	})
	if err == nil {
		return created.ID, nil
	}
	// Another rcluster may have made it in between.
	if id, found, ferr := r.findNetwork(ctx); ferr == nil && found {
		return id, nil
	}
	hint := "set subnet: in the spec to a free private subnet"
	if others := r.overlapping(ctx, sub); len(others) > 0 {
		hint = "it overlaps " + strings.Join(others, ", ") + "; " + hint
	}
	return "", fmt.Errorf("%w (%s)", err, hint)
}

// findNetwork looks the cluster's network up by name.
func (r *Runtime) findNetwork(ctx context.Context) (id string, found bool, err error) {
	s := r.Spec
	name, sub := NetworkName(s), s.BridgeSubnet()
	res, err := engine(ctx, r.o.CallTimeout, "network "+name+": inspect", func(ctx context.Context) (client.NetworkInspectResult, error) {
		return r.cli.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
	})
	switch {
	case cerrdefs.IsNotFound(err):
		return "", false, nil
	case err != nil:
		return "", false, err
	case !r.ourNetwork(res.Network.Labels):
		return "", false, fmt.Errorf("network %s exists but is not this cluster's (it lacks the labels %s=%s, %s=%s); rcluster leaves it alone", name, LabelCluster, s.Name, LabelDir, s.Dir)
	}
	if got := subnets(res.Network.IPAM); len(got) != 1 || got[0] != sub {
		return "", false, fmt.Errorf("network %s has subnet %v but the spec asks for %s (`rcluster down` removes the network with the last container)", name, got, sub)
	}
	return res.Network.ID, true, nil
}

func subnets(ipam network.IPAM) []netip.Prefix {
	var out []netip.Prefix
	for _, c := range ipam.Config {
		out = append(out, c.Subnet)
	}
	return out
}

// overlapping names the Docker networks whose subnets overlap sub (for an
// error message: failures are left out).
func (r *Runtime) overlapping(ctx context.Context, sub netip.Prefix) []string {
	res, err := engine(context.WithoutCancel(ctx), r.o.CallTimeout, "list networks", func(ctx context.Context) (client.NetworkListResult, error) {
		return r.cli.NetworkList(ctx, client.NetworkListOptions{})
	})
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range res.Items {
		for _, p := range subnets(n.IPAM) {
			if p.Overlaps(sub) {
				out = append(out, fmt.Sprintf("Docker network %s (%s)", n.Name, p))
			}
		}
	}
	return out
}

// checkRoutes fails when sub overlaps a route of the host (Linux: the
// kernel's IPv4 routing table) other than the default route and Docker's
// own bridges (the engine checks those itself). The engine creates a
// bridge on a subnet the host already routes elsewhere without a word, and
// the host then sends that traffic to the bridge: a LAN or VPN would go
// dark.
func checkRoutes(sub netip.Prefix) error {
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return nil // not Linux: the engine runs in a VM, with routes of its own
	}
	for _, rt := range parseRoutes(data) {
		if rt.dst.Bits() == 0 || rt.iface == "docker0" || strings.HasPrefix(rt.iface, "br-") {
			continue
		}
		if rt.dst.Overlaps(sub) {
			return fmt.Errorf("subnet %s overlaps the host's route to %s on %s (set subnet: in the spec to a private subnet the host does not use)", sub, rt.dst, rt.iface)
		}
	}
	return nil
}

type route struct {
	iface string
	dst   netip.Prefix
}

// parseRoutes reads /proc/net/route: destination and mask are hex in the
// kernel's byte order.
func parseRoutes(data []byte) []route {
	var out []route
	sc := bufio.NewScanner(bytes.NewReader(data))
	for first := true; sc.Scan(); first = false {
		f := strings.Fields(sc.Text())
		if first || len(f) < 8 {
			continue
		}
		dst, err1 := strconv.ParseUint(f[1], 16, 32)
		mask, err2 := strconv.ParseUint(f[7], 16, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		var d, m [4]byte
		binary.NativeEndian.PutUint32(d[:], uint32(dst))
		binary.NativeEndian.PutUint32(m[:], uint32(mask))
		bits := 0
		for _, b := range m {
			for ; b&0x80 != 0; b <<= 1 {
				bits++
			}
		}
		out = append(out, route{iface: f[0], dst: netip.PrefixFrom(netip.AddrFrom4(d), bits).Masked()})
	}
	return out
}

// removeNetworks removes this spec's networks (any network labelled with
// its state dir, so also one left by an earlier network: bridge spec) once
// no container of the state dir is left. A network still in use by a
// container rcluster did not make is an error, and stays.
func (r *Runtime) removeNetworks(ctx context.Context) error {
	r.netMu.Lock()
	defer r.netMu.Unlock()
	if cs, err := r.owned(ctx); err != nil || len(cs) > 0 {
		return err
	}
	f := make(client.Filters).Add("label", LabelDir+"="+r.Spec.Dir)
	res, err := engine(ctx, r.o.CallTimeout, "list networks of "+r.Spec.Dir, func(ctx context.Context) (client.NetworkListResult, error) {
		return r.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range res.Items {
		if !r.ourNetwork(n.Labels) {
			continue
		}
		_, err := engine(ctx, r.o.CallTimeout, "network "+n.Name+": remove", func(ctx context.Context) (client.NetworkRemoveResult, error) {
			return r.cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
		})
		if err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// endpoint is container c's attachment to the cluster's network, or nil
// when it is cut off. A stopped container keeps its attachment (without
// an address until it starts).
func (r *Runtime) endpoint(c container.InspectResponse) *network.EndpointSettings {
	if c.NetworkSettings == nil {
		return nil
	}
	return c.NetworkSettings.Networks[NetworkName(r.Spec)]
}

// cutOff reports whether container c is partitioned: network: bridge, and
// c is not attached to the cluster's network.
func (r *Runtime) cutOff(c container.InspectResponse) bool {
	return r.Spec.IsBridge() && r.endpoint(c) == nil
}

// Partition cuts node n off the cluster's network (network: bridge): its
// container is disconnected and keeps running, the node alone in its
// network namespace; the other nodes mark it failed after
// cluster-node-timeout. It returns once the node no longer answers at its
// address from the host. A node already cut off is left as it is; one
// that is not running is an error. With host networking (the default) it
// fails with ErrPartitionUnsupported and changes nothing.
func (r *Runtime) Partition(ctx context.Context, n spec.Node) error {
	fail := func(err error) error { return fmt.Errorf("node %s: partition: %w", n.Addr(), err) }
	if !r.Spec.IsBridge() {
		return fail(ErrPartitionUnsupported)
	}
	c, err := r.runningContainer(ctx, n)
	if err != nil {
		return fail(err)
	}
	name, netName := ContainerName(r.Spec, n.Port), NetworkName(r.Spec)
	if !r.cutOff(c) {
		if _, err := engine(ctx, r.o.CallTimeout, "network "+netName+": disconnect "+name, func(ctx context.Context) (client.NetworkDisconnectResult, error) {
			return r.cli.NetworkDisconnect(ctx, netName, client.NetworkDisconnectOptions{Container: c.ID})
		}); err != nil {
			return fail(err)
		}
	}
	if err := r.waitUnreachable(ctx, n); err != nil {
		return fail(err)
	}
	return nil
}

// waitUnreachable polls, within Grace, until nothing answers PING at n's
// address. A cut-off address answers nothing: every attempt costs its
// whole (short) timeout, so one failed attempt ends the wait.
func (r *Runtime) waitUnreachable(parent context.Context, n spec.Node) error {
	ctx, cancel := context.WithTimeout(parent, r.o.Grace)
	defer cancel()
	conn := r.o.Conn
	conn.Timeout = min(conn.CallTimeout(), unreachableProbe)
	for b := (&poll.Backoff{}); ; {
		if err := ping(ctx, n, conn); err != nil {
			return nil
		}
		if b.Wait(ctx) != nil {
			if err := parent.Err(); err != nil {
				return err
			}
			return fmt.Errorf("still answers PING at %s %s after it was disconnected from network %s", n.Addr(), r.o.Grace, NetworkName(r.Spec))
		}
	}
}

// unreachableProbe bounds each PING of waitUnreachable: a node on the
// local bridge answers in well under a millisecond, so silence this long,
// after the engine has detached it, is the partition.
const unreachableProbe = 250 * time.Millisecond

// Heal connects node n's container to the cluster's network again with
// its IP (network: bridge) and, when the node runs, returns once it
// answers PING at its address. A node that is not cut off is only waited
// for, so healing every node is cheap. A stopped container is reconnected
// (it answers once started); a paused one too, without the wait. With
// host networking it fails with ErrPartitionUnsupported.
func (r *Runtime) Heal(ctx context.Context, n spec.Node) error {
	fail := func(err error) error { return fmt.Errorf("node %s: heal: %w", n.Addr(), err) }
	if !r.Spec.IsBridge() {
		return fail(ErrPartitionUnsupported)
	}
	c, found, err := r.nodeContainer(ctx, n)
	if err != nil {
		return fail(err)
	}
	name, netName := ContainerName(r.Spec, n.Port), NetworkName(r.Spec)
	if !found {
		return fail(fmt.Errorf("no container %s", name))
	}
	if r.cutOff(c) {
		if _, err := r.ensureNetwork(ctx); err != nil {
			return fail(err)
		}
		if _, err := engine(ctx, r.o.CallTimeout, "network "+netName+": connect "+name+" as "+n.Host, func(ctx context.Context) (client.NetworkConnectResult, error) {
			return r.cli.NetworkConnect(ctx, netName, client.NetworkConnectOptions{Container: c.ID, EndpointConfig: r.endpointConfig(n)})
		}); err != nil {
			return fail(err)
		}
	}
	if !c.State.Running || c.State.Paused {
		return nil
	}
	if err := r.waitReady(ctx, c.ID, n); err != nil {
		return fail(fmt.Errorf("container %s: %w", name, err))
	}
	return nil
}

// endpointConfig attaches node n to the cluster's network at its IP.
func (r *Runtime) endpointConfig(n spec.Node) *network.EndpointSettings {
	ip, _ := netip.ParseAddr(n.Host)
	return &network.EndpointSettings{IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: ip}}
}
