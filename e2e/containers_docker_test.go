package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/e2e/containers"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

// These tests prove the Docker infrastructure of the e2e tier: six Redis
// nodes, each in its own container with its own IP, formed into a cluster by
// the reference tool (redis-cli --cluster create) from the host, then a
// master crash and a network partition. rcluster's own code is not involved.

// dockerCluster starts n containers and forms a cluster with replicas per
// master using redis-cli from the host.
func dockerCluster(ctx context.Context, t *testing.T, n, replicas int) []*containers.Node {
	t.Helper()
	containers.RequireDocker(t)
	redistest.RequireBinary(t, "redis-cli")
	nw := containers.NewNetwork(ctx, t)
	start := time.Now()
	nodes := containers.StartRedisNodes(ctx, t, nw, n)
	started := time.Since(start)
	redistest.CreateCluster(t, rtNodes(nodes), replicas)
	t.Logf("%d containers started in %v, cluster ok %v later", n,
		started.Round(time.Millisecond), (time.Since(start) - started).Round(time.Millisecond))
	return nodes
}

// rtNodes adapts container nodes to redistest's cluster helpers, which only
// use the address.
func rtNodes(nodes []*containers.Node) []*redistest.Node {
	out := make([]*redistest.Node, len(nodes))
	for i, n := range nodes {
		out[i] = &redistest.Node{Addr: n.Addr}
	}
	return out
}

// clusterNode is the part of a CLUSTER NODES line these tests look at.
type clusterNode struct {
	ID, Addr, MasterID string
	Flags              []string
	Slots              []string
}

func (n clusterNode) has(flag string) bool { return slices.Contains(n.Flags, flag) }

func (n clusterNode) failing() bool { return n.has("fail") || n.has("fail?") }

func parseClusterNodes(text string) ([]clusterNode, error) {
	var out []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("short CLUSTER NODES line %q", line)
		}
		addr, _, _ := strings.Cut(f[1], "@")
		m := f[3]
		if m == "-" {
			m = ""
		}
		out = append(out, clusterNode{ID: f[0], Addr: addr, Flags: strings.Split(f[2], ","),
			MasterID: m, Slots: f[8:]})
	}
	return out, nil
}

// view returns what the node at addr says about the cluster.
func view(ctx context.Context, addr string) ([]clusterNode, error) {
	c := redisconn.Options{Timeout: time.Second}.Node(addr)
	defer c.Close()
	s, err := c.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("CLUSTER NODES on %s: %w", addr, err)
	}
	return parseClusterNodes(s)
}

func byAddr(v []clusterNode, addr string) (clusterNode, bool) {
	for _, n := range v {
		if n.Addr == addr {
			return n, true
		}
	}
	return clusterNode{}, false
}

// eventually polls check with short backoff until it returns nil; it fails
// the test with check's last error after timeout. Returns the time it took.
func eventually(ctx context.Context, t *testing.T, timeout time.Duration, what string, check func(context.Context) error) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	delay := 20 * time.Millisecond
	for {
		err := check(ctx)
		if err == nil {
			return time.Since(start)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 250*time.Millisecond)
	}
}

// clusterOK checks CLUSTER INFO on every addr: state ok, all slots ok.
func clusterOK(ctx context.Context, addrs []string) error {
	for _, a := range addrs {
		c := redisconn.Options{Timeout: time.Second}.Node(a)
		info, err := c.ClusterInfo(ctx).Result()
		c.Close()
		if err != nil {
			return fmt.Errorf("CLUSTER INFO on %s: %w", a, err)
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			return fmt.Errorf("%s: not ok: %q", a, strings.ReplaceAll(info, "\r\n", " "))
		}
	}
	return nil
}

const nKeys = 100

func key(i int) string { return fmt.Sprintf("key:%03d", i) }

// writeKeys SETs nKeys keys through a cluster client, reads them back, and
// checks they are spread over all masters. With waitReplica, each master must
// also get them acknowledged by a replica (WAIT), so a failover cannot lose
// them.
func writeKeys(ctx context.Context, t *testing.T, cc *redis.ClusterClient, masters int, waitReplica bool) {
	t.Helper()
	for i := range nKeys {
		if err := cc.Set(ctx, key(i), i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key(i), err)
		}
	}
	if err := readKeys(ctx, cc); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	sizes := map[string]int64{}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		addr := c.Options().Addr
		n, err := c.DBSize(ctx).Result()
		if err != nil {
			return fmt.Errorf("DBSIZE on %s: %w", addr, err)
		}
		if waitReplica {
			// WAIT's timeout stays below the client's 2s read timeout.
			acked, err := c.Do(ctx, "WAIT", 1, 1500).Int()
			if err != nil || acked < 1 {
				return fmt.Errorf("WAIT on %s: %d replicas acked, %v", addr, acked, err)
			}
		}
		mu.Lock()
		sizes[addr] = n
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for addr, n := range sizes {
		if n == 0 {
			t.Errorf("master %s holds no keys", addr)
		}
		total += n
	}
	if len(sizes) != masters || total != nKeys {
		t.Fatalf("keys per master %v (total %d), want %d masters holding %d keys", sizes, total, masters, nKeys)
	}
	t.Logf("%d keys written, per master: %v", nKeys, sizes)
}

// readKeys GETs every key and checks its value; it returns the first error.
func readKeys(ctx context.Context, cc *redis.ClusterClient) error {
	for i := range nKeys {
		v, err := cc.Get(ctx, key(i)).Int()
		if err != nil {
			return fmt.Errorf("GET %s: %w", key(i), err)
		}
		if v != i {
			return fmt.Errorf("GET %s = %d, want %d", key(i), v, i)
		}
	}
	return nil
}

// pickMasterWithReplica returns, from addr's view, a master, one of its
// replicas, and a third node to observe from. Right after create a view can
// still show replicas as masters, so it polls until addr's view shows
// masters masters with slots, each with a replica.
func pickMasterWithReplica(ctx context.Context, t *testing.T, addr string, masters int) (master, replica, observer clusterNode) {
	t.Helper()
	eventually(ctx, t, 10*time.Second, "view with a replica per master", func(ctx context.Context) error {
		v, err := view(ctx, addr)
		if err != nil {
			return err
		}
		var found []clusterNode
		for _, m := range v {
			if !m.has("master") || len(m.Slots) == 0 {
				continue
			}
			for _, r := range v {
				if r.MasterID == m.ID && r.has("slave") {
					found = append(found, m, r)
					break
				}
			}
		}
		if len(found) != 2*masters {
			return fmt.Errorf("view of %s has %d masters with a replica, want %d: %+v", addr, len(found)/2, masters, v)
		}
		master, replica = found[0], found[1]
		for _, o := range v {
			if o.ID != master.ID && o.ID != replica.ID {
				observer = o
				return nil
			}
		}
		return fmt.Errorf("no third node in the view of %s", addr)
	})
	return master, replica, observer
}

func nodeAt(t *testing.T, nodes []*containers.Node, addr string) *containers.Node {
	t.Helper()
	for _, n := range nodes {
		if n.Addr == addr {
			return n
		}
	}
	t.Fatalf("no container has address %s (containers: %v)", addr, containers.Addrs(nodes))
	return nil
}

func without(addrs []string, skip string) []string {
	return slices.DeleteFunc(slices.Clone(addrs), func(a string) bool { return a == skip })
}

// TestDockerClusterFailover: a master container is stopped, its replica is
// promoted and every slot and key stays served; started again, the old
// master rejoins as a replica of the promoted node.
func TestDockerClusterFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nodes := dockerCluster(ctx, t, 6, 1)
	addrs := containers.Addrs(nodes)

	cc := redisconn.Options{}.Cluster(addrs)
	defer cc.Close()
	writeKeys(ctx, t, cc, 3, true)

	m, r, o := pickMasterWithReplica(ctx, t, addrs[0], 3)
	victim := nodeAt(t, nodes, m.Addr)
	t.Logf("stopping master %s; its replica %s should take over (observer %s)", m.Addr, r.Addr, o.Addr)
	stopStart := time.Now()
	if err := victim.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("container stopped in %v", time.Since(stopStart).Round(time.Millisecond))
	survivors := without(addrs, m.Addr)

	took := eventually(ctx, t, 30*time.Second, "replica promoted", func(ctx context.Context) error {
		v, err := view(ctx, o.Addr)
		if err != nil {
			return err
		}
		old, _ := byAddr(v, m.Addr)
		promoted, _ := byAddr(v, r.Addr)
		if !old.has("fail") {
			return fmt.Errorf("%s does not flag stopped master %s fail: %v", o.Addr, m.Addr, old.Flags)
		}
		if !promoted.has("master") || len(promoted.Slots) == 0 {
			return fmt.Errorf("%s: replica %s not promoted yet: %v %v", o.Addr, r.Addr, promoted.Flags, promoted.Slots)
		}
		return clusterOK(ctx, survivors)
	})
	t.Logf("failover done %v after stop", took.Round(time.Millisecond))

	// A fresh client seeded with the survivors: the long-lived one would
	// spend 5 dial attempts x 2s on the stopped node's silent IP (no RST
	// from a vanished container) before moving on.
	fresh := redisconn.Options{}.Cluster(survivors)
	defer fresh.Close()
	took = eventually(ctx, t, 20*time.Second, "all keys readable after failover", func(ctx context.Context) error {
		return readKeys(ctx, fresh)
	})
	t.Logf("all %d keys readable %v later", nKeys, took.Round(time.Millisecond))

	if err := victim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	took = eventually(ctx, t, 30*time.Second, "old master rejoins as replica", func(ctx context.Context) error {
		v, err := view(ctx, o.Addr)
		if err != nil {
			return err
		}
		old, _ := byAddr(v, m.Addr)
		if old.failing() || !old.has("slave") || old.MasterID != r.ID {
			return fmt.Errorf("%s sees old master %s as %v replicating %q, want slave of %s", o.Addr, m.Addr, old.Flags, old.MasterID, r.ID)
		}
		self, err := view(ctx, m.Addr)
		if err != nil {
			return err
		}
		for _, n := range self {
			if n.failing() {
				return fmt.Errorf("%s still flags %s %v", m.Addr, n.Addr, n.Flags)
			}
		}
		return nil
	})
	t.Logf("old master rejoined as replica %v after start", took.Round(time.Millisecond))
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := redistest.WaitClusterOK(wctx, rtNodes(nodes)); err != nil {
		t.Fatalf("cluster not healthy after the old master came back: %v", err)
	}
	// The long-lived client, whose slot map predates the failover, follows
	// the MOVED redirects once every address answers again.
	took = eventually(ctx, t, 30*time.Second, "keys readable by the first client after rejoin", func(ctx context.Context) error {
		return readKeys(ctx, cc)
	})
	t.Logf("first client reads all keys again %v later", took.Round(time.Millisecond))
}

// TestDockerPartition: a replica's container is disconnected from the
// network; every other node flags it failing and it sees the cluster down
// from its side, while the majority keeps serving. Reconnected, the flags
// clear everywhere.
func TestDockerPartition(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nodes := dockerCluster(ctx, t, 6, 1)
	addrs := containers.Addrs(nodes)

	_, r, _ := pickMasterWithReplica(ctx, t, addrs[0], 3)
	cut := nodeAt(t, nodes, r.Addr)
	others := without(addrs, r.Addr)
	t.Logf("disconnecting replica %s from the network", r.Addr)
	if err := cut.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}

	took := eventually(ctx, t, 20*time.Second, "others flag the cut node", func(ctx context.Context) error {
		for _, a := range others {
			v, err := view(ctx, a)
			if err != nil {
				return err
			}
			if n, _ := byAddr(v, r.Addr); !n.failing() {
				return fmt.Errorf("%s sees cut node %s as %v", a, r.Addr, n.Flags)
			}
		}
		return nil
	})
	t.Logf("all %d other nodes flag %s failing %v after the cut", len(others), r.Addr, took.Round(time.Millisecond))

	// From inside the cut container, no master is reachable.
	eventually(ctx, t, 20*time.Second, "cut node sees the cluster down", func(ctx context.Context) error {
		code, out, err := cut.Exec(ctx, "redis-cli", "cluster", "info")
		if err != nil || code != 0 {
			return fmt.Errorf("exit %d, %v: %s", code, err, out)
		}
		if !strings.Contains(out, "cluster_state:fail") {
			return fmt.Errorf("cut node %s still says %q", r.Addr, firstLine(out))
		}
		return nil
	})

	// The majority side keeps serving every slot.
	if err := clusterOK(ctx, others); err != nil {
		t.Fatalf("majority side unhealthy during the partition: %v", err)
	}
	cc := redisconn.Options{}.Cluster(others)
	defer cc.Close()
	// The cut replica's master cannot WAIT for it: no replica acks here.
	writeKeys(ctx, t, cc, 3, false)

	if err := cut.Reconnect(ctx); err != nil {
		t.Fatal(err)
	}
	took = eventually(ctx, t, 30*time.Second, "flags clear after reconnect", func(ctx context.Context) error {
		for _, a := range addrs {
			v, err := view(ctx, a)
			if err != nil {
				return err
			}
			for _, n := range v {
				if n.failing() {
					return fmt.Errorf("%s still flags %s %v", a, n.Addr, n.Flags)
				}
			}
		}
		return clusterOK(ctx, addrs)
	})
	t.Logf("flags cleared %v after reconnect", took.Round(time.Millisecond))
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := redistest.WaitClusterOK(wctx, rtNodes(nodes)); err != nil {
		t.Fatalf("cluster not healthy after reconnect: %v", err)
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}
