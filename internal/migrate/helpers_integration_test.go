package migrate

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
	"github.com/rcluster/rcluster/internal/topology"
)

// tc is a cluster of real redis-server processes formed by redis-cli.
type tc struct {
	t     *testing.T
	nodes []*redistest.Node
	addrs []string
	conn  redisconn.Options
	cc    *redis.ClusterClient
	cls   map[string]*redis.Client
}

// startCluster starts n nodes (cluster-node-timeout 5000, as the brief
// asks) and forms a cluster with replicas replicas per master.
func startCluster(t *testing.T, n, replicas int) *tc {
	t.Helper()
	redistest.Integration(t)
	nodes := redistest.Start(t, n, "--cluster-node-timeout", "5000")
	redistest.CreateCluster(t, nodes, replicas)
	c := &tc{t: t, nodes: nodes, addrs: redistest.Addrs(nodes), conn: redisconn.Options{Timeout: 2 * time.Second}, cls: map[string]*redis.Client{}}
	c.cc = c.conn.Cluster(c.addrs)
	t.Cleanup(func() { c.cc.Close() })
	return c
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// client is a plain client to one node (no ASKING, no redirects
// followed), one per address for the whole test.
func (c *tc) client(addr string) *redis.Client {
	cl, ok := c.cls[addr]
	if !ok {
		cl = redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, Protocol: 2, DisableIdentity: true})
		c.cls[addr] = cl
		c.t.Cleanup(func() { cl.Close() })
	}
	return cl
}

// views reads every node's CLUSTER NODES and CLUSTER INFO once.
func (c *tc) views() (map[string][]topology.Node, map[string]map[string]string) {
	c.t.Helper()
	ctx := testCtx(c.t, 5*time.Second)
	nodes := map[string][]topology.Node{}
	infos := map[string]map[string]string{}
	for _, a := range c.addrs {
		cl := c.client(a)
		text, err := cl.ClusterNodes(ctx).Result()
		if err != nil {
			c.t.Fatalf("%s: cluster nodes: %v", a, err)
		}
		info, err := cl.ClusterInfo(ctx).Result()
		if err != nil {
			c.t.Fatalf("%s: cluster info: %v", a, err)
		}
		ns, err := topology.ParseNodes(text)
		if err != nil {
			c.t.Fatal(err)
		}
		nodes[a], infos[a] = ns, topology.ParseInfo(info)
	}
	return nodes, infos
}

// me returns the node id and own view of addr.
func (c *tc) me(addr string) topology.Node {
	c.t.Helper()
	vs, _ := c.views()
	m, _ := topology.Myself(vs[addr])
	return m
}

// masters returns the masters' own myself lines, in address order.
func (c *tc) masters() []topology.Node {
	c.t.Helper()
	vs, _ := c.views()
	var out []topology.Node
	for _, a := range c.addrs {
		m, _ := topology.Myself(vs[a])
		if m.IsMaster() {
			m.Addr = a
			out = append(out, m)
		}
	}
	return out
}

// assertAgreed checks, once (no polling: right after the call returned),
// that every node is ok, agrees on the slot owners, covers all 16384 slots
// and has no open slot; and that redis-cli --cluster check passes.
func (c *tc) assertAgreed() {
	c.t.Helper()
	vs, infos := c.views()
	sig := topology.SlotSignature(vs[c.addrs[0]])
	for _, a := range c.addrs {
		if got := topology.SlotSignature(vs[a]); got != sig {
			c.t.Errorf("%s: slot owners %s\n  differ from %s's %s", a, got, c.addrs[0], sig)
		}
		if infos[a]["cluster_state"] != "ok" {
			c.t.Errorf("%s: cluster_state:%s", a, infos[a]["cluster_state"])
		}
		if cov := topology.SlotOwners(vs[a]).Covered(); cov != topology.SlotCount {
			c.t.Errorf("%s: %d slots covered", a, cov)
		}
		me, _ := topology.Myself(vs[a])
		if open := me.OpenSlots(); len(open) > 0 {
			c.t.Errorf("%s: open slots %v", a, open)
		}
	}
	c.clusterCheck()
}

// clusterCheck runs the reference checker, redis-cli --cluster check.
func (c *tc) clusterCheck() {
	c.t.Helper()
	cli := redistest.RequireBinary(c.t, "redis-cli")
	out, err := exec.Command(cli, "--cluster", "check", c.addrs[0]).CombinedOutput()
	s := string(out)
	if err != nil || !strings.Contains(s, "[OK] All nodes agree about slots configuration.") ||
		!strings.Contains(s, "[OK] All 16384 slots covered.") || strings.Contains(s, "[ERR]") || strings.Contains(s, "[WARNING]") {
		c.t.Errorf("redis-cli --cluster check %s: %v\n%s", c.addrs[0], err, s)
	}
}

// value is the 100-byte value of key i at version v.
func value(i, v int) string {
	s := fmt.Sprintf("%d:%d:", i, v)
	return s + strings.Repeat("x", 100-len(s))
}

// fill writes n keys key:<i> of 100 bytes through the cluster client
// (pipelines of 1000) and returns them with their values.
func (c *tc) fill(n int) map[string]string {
	c.t.Helper()
	ctx := testCtx(c.t, 60*time.Second)
	data := make(map[string]string, n)
	for i := 0; i < n; i += 1000 {
		pipe := c.cc.Pipeline()
		for j := i; j < min(i+1000, n); j++ {
			k := fmt.Sprintf("key:%d", j)
			data[k] = value(j, 0)
			pipe.Set(ctx, k, data[k], 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			c.t.Fatalf("fill: %v", err)
		}
	}
	return data
}

// fillSlot writes n keys that hash to slot (a hash tag) directly.
func (c *tc) fillSlot(slot, n int) map[string]string {
	c.t.Helper()
	ctx := testCtx(c.t, 30*time.Second)
	tag := topology.KeyForSlot(slot)
	data := map[string]string{}
	pipe := c.cc.Pipeline()
	for i := range n {
		k := fmt.Sprintf("{%s}:%d", tag, i)
		data[k] = value(slot*100000+i, 0)
		pipe.Set(ctx, k, data[k], 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		c.t.Fatalf("fill slot %d: %v", slot, err)
	}
	return data
}

// dbsize is the number of keys on the masters.
func (c *tc) dbsize() int64 {
	c.t.Helper()
	ctx := testCtx(c.t, 5*time.Second)
	var n int64
	for _, m := range c.masters() {
		d, err := c.client(m.Addr).DBSize(ctx).Result()
		if err != nil {
			c.t.Fatalf("%s: dbsize: %v", m.Addr, err)
		}
		n += d
	}
	return n
}

// assertData reads every key through a cluster client and compares.
func (c *tc) assertData(data map[string]string) {
	c.t.Helper()
	ctx := testCtx(c.t, 60*time.Second)
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	bad := 0
	for i := 0; i < len(keys); i += 1000 {
		pipe := c.cc.Pipeline()
		chunk := keys[i:min(i+1000, len(keys))]
		cmds := make([]*redis.StringCmd, len(chunk))
		for j, k := range chunk {
			cmds[j] = pipe.Get(ctx, k)
		}
		_, _ = pipe.Exec(ctx)
		for j, cmd := range cmds {
			if v, err := cmd.Result(); err != nil || v != data[chunk[j]] {
				if bad++; bad <= 5 {
					c.t.Errorf("key %s: got %.20q, %v; want %.20q", chunk[j], v, err, data[chunk[j]])
				}
			}
		}
	}
	if bad > 0 {
		c.t.Errorf("%d of %d keys wrong or unreadable", bad, len(keys))
	}
}

// ownerOf returns the master that owns slot in addrs[0]'s view.
func (c *tc) ownerOf(slot int) topology.Node {
	c.t.Helper()
	for _, m := range c.masters() {
		if m.Owns(slot) {
			return m
		}
	}
	c.t.Fatalf("no master owns slot %d", slot)
	return topology.Node{}
}

// other returns a master that is neither a nor b.
func (c *tc) other(ids ...string) topology.Node {
	c.t.Helper()
next:
	for _, m := range c.masters() {
		for _, id := range ids {
			if m.ID == id {
				continue next
			}
		}
		return m
	}
	c.t.Fatal("no other master")
	return topology.Node{}
}

func rangeMoves(first, last int, fromID, toID string) []Move {
	var out []Move
	for s := first; s <= last; s++ {
		out = append(out, Move{Slot: s, From: fromID, To: toID})
	}
	return out
}

func countIn(t *testing.T, cl *redis.Client, slot int) int64 {
	t.Helper()
	n, err := cl.ClusterCountKeysInSlot(testCtx(t, 5*time.Second), slot).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}
