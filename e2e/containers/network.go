package containers

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
)

// Network is a user-defined bridge network with an explicit IPv4 subnet, so
// nodes get fixed addresses that survive a container restart or a
// disconnect/reconnect (Docker would otherwise hand out a new address).
type Network struct {
	*testcontainers.DockerNetwork
	Subnet  netip.Prefix
	Gateway netip.Addr

	mu   sync.Mutex
	used map[netip.Addr]bool
}

// NewNetwork creates a bridge network (labelled rcluster.e2e=true) removed
// at the end of the test. Docker picks a free subnet on a probe network that
// is removed at once and recreated with that subnet configured explicitly
// (retried if another process grabs it in between).
func NewNetwork(ctx context.Context, t testing.TB) *Network {
	t.Helper()
	RequireDocker(t)
	id := testID(t)
	var errs []error
	for attempt := 0; attempt < 5; attempt++ {
		nw, err := newNetwork(ctx, t, id)
		if err == nil {
			return nw
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	t.Fatalf("new network: %v", errors.Join(errs...))
	return nil
}

func newNetwork(ctx context.Context, t testing.TB, id string) (*Network, error) {
	cli, err := dockerClient(ctx)
	if err != nil {
		return nil, err
	}
	labels := map[string]string{Label: "true", TestLabel: id}

	probe, err := tcnetwork.New(ctx, tcnetwork.WithLabels(labels))
	testcontainers.CleanupNetwork(t, probe) // no-op once removed below
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	subnet, gw, err := ipv4Config(ctx, cli, probe.ID)
	rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if rmErr := probe.Remove(rmCtx); rmErr != nil {
		return nil, fmt.Errorf("remove probe network %s: %w", probe.Name, rmErr)
	}
	if err != nil {
		return nil, err
	}

	ipam := &network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: subnet, Gateway: gw}}}
	dn, err := tcnetwork.New(ctx, tcnetwork.WithLabels(labels), tcnetwork.WithIPAM(ipam))
	testcontainers.CleanupNetwork(t, dn)
	if err != nil {
		return nil, fmt.Errorf("create with subnet %s: %w", subnet, err)
	}
	return &Network{DockerNetwork: dn, Subnet: subnet, Gateway: gw,
		used: map[netip.Addr]bool{gw: true}}, nil
}

// ipv4Config reads the first IPv4 subnet and gateway of network id.
func ipv4Config(ctx context.Context, cli *testcontainers.DockerClient, id string) (netip.Prefix, netip.Addr, error) {
	res, err := cli.NetworkInspect(ctx, id, client.NetworkInspectOptions{})
	if err != nil {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("inspect network %s: %w", id[:12], err)
	}
	for _, c := range res.Network.IPAM.Config {
		if c.Subnet.Addr().Is4() {
			gw := c.Gateway
			if !gw.IsValid() {
				gw = c.Subnet.Masked().Addr().Next()
			}
			return c.Subnet.Masked(), gw, nil
		}
	}
	return netip.Prefix{}, netip.Addr{}, fmt.Errorf("network %s has no IPv4 subnet", id[:12])
}

// allocIP hands out the next free host address of the subnet.
func (n *Network) allocIP() (netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return nextFree(n.Subnet, n.used)
}

// nextFree returns the lowest host address of subnet that is not in used
// (skipping the network address and the broadcast address) and marks it.
func nextFree(subnet netip.Prefix, used map[netip.Addr]bool) (netip.Addr, error) {
	for a := subnet.Masked().Addr().Next(); subnet.Contains(a); a = a.Next() {
		if used[a] {
			continue
		}
		if !subnet.Contains(a.Next()) { // broadcast
			break
		}
		used[a] = true
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("subnet %s is full", subnet)
}
