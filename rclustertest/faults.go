package rclustertest

import (
	"context"
	"time"

	"github.com/rcluster/rcluster/internal/cluster"
	"github.com/rcluster/rcluster/internal/failover"
)

// Changing the test's cluster under a running client: each call returns
// only when every reachable node of the cluster agrees on the result (no
// polling needed by the test), or fails the test naming the node that does
// not. Nodes are named as in rcluster: "127.0.0.1:7001", "7001" or a node id.

// opTimeout bounds every operation below.
const opTimeout = 60 * time.Second

// FailoverResult is a finished failover.
type FailoverResult struct {
	// OldMaster and NewMaster are host:port.
	OldMaster, NewMaster string
	// Took is from the call to every node agreeing.
	Took time.Duration
	// Detail describes the parts (detection, election, propagation).
	Detail string
}

func result(r *failover.Result) FailoverResult {
	return FailoverResult{OldMaster: r.Old.Addr, NewMaster: r.New.Addr, Took: r.Agreed, Detail: r.String()}
}

func (c *Cluster) failover(t failover.Target, mode failover.Mode) FailoverResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	r, err := c.cl.Failover(ctx, t, failover.Options{Mode: mode})
	if err != nil {
		c.t.Fatalf("rclustertest: failover of %s: %v", t, err)
	}
	return result(r)
}

// Failover promotes a replica of node's shard gracefully (node may be the
// master, whose best replica is promoted, or the replica to promote): no
// acknowledged write is lost.
func (c *Cluster) Failover(node string) FailoverResult {
	c.t.Helper()
	return c.failover(failover.ByNode(node), failover.Graceful)
}

// FailoverKey is Failover of the shard that holds key.
func (c *Cluster) FailoverKey(key string) FailoverResult {
	c.t.Helper()
	return c.failover(failover.ByKey(key), failover.Graceful)
}

// FailoverSlot is Failover of the shard that owns slot.
func (c *Cluster) FailoverSlot(slot int) FailoverResult {
	c.t.Helper()
	return c.failover(failover.BySlot(slot), failover.Graceful)
}

// ForceFailover is CLUSTER FAILOVER FORCE on node's shard: for a master
// that is down (writes it had not replicated are lost).
func (c *Cluster) ForceFailover(node string) FailoverResult {
	c.t.Helper()
	return c.failover(failover.ByNode(node), failover.Force)
}

func (c *Cluster) node(op cluster.NodeOp, wait bool, nodes []string) []cluster.NodeResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	res, err := c.cl.Node(ctx, op, nodes, cluster.NodeOptions{WaitFailover: wait, Timeout: opTimeout})
	if err != nil {
		c.t.Fatalf("rclustertest: %s %v: %v", op, nodes, err)
	}
	return res
}

// Kill ends nodes as a crash would (SIGKILL). It returns when they are gone.
func (c *Cluster) Kill(nodes ...string) { c.t.Helper(); c.node(cluster.Kill, false, nodes) }

// KillAndWaitFailover kills a master and returns when its replica has
// taken over on every node and the cluster is ok again (the test fails if
// the master has no replica).
func (c *Cluster) KillAndWaitFailover(master string) FailoverResult {
	c.t.Helper()
	res := c.node(cluster.Kill, true, []string{master})
	if res[0].Failover == nil {
		c.t.Fatalf("rclustertest: %s is not a master with slots: nothing to fail over", master)
	}
	return result(res[0].Failover)
}

// Stop stops nodes gracefully (SHUTDOWN: their data is kept).
func (c *Cluster) Stop(nodes ...string) { c.t.Helper(); c.node(cluster.Stop, false, nodes) }

// StartNodes starts stopped or killed nodes with their data and returns when
// every node agrees the cluster is healthy with them back.
func (c *Cluster) StartNodes(nodes ...string) { c.t.Helper(); c.node(cluster.Start, false, nodes) }

// Pause freezes nodes (SIGSTOP): they accept connections but answer
// nothing, as a hung host would.
func (c *Cluster) Pause(nodes ...string) { c.t.Helper(); c.node(cluster.Pause, false, nodes) }

// Resume undoes Pause and returns when every node agrees the cluster is
// healthy again.
func (c *Cluster) Resume(nodes ...string) { c.t.Helper(); c.node(cluster.Resume, false, nodes) }

// Reset brings the cluster back to its state right after Start: every
// node running, the planned masters masters again, no keys. It takes
// milliseconds (a new cluster cannot be usable sooner than ~2 s).
func (c *Cluster) Reset() { c.t.Helper(); c.reset(false) }

// ResetKeepData is Reset without flushing the keys.
func (c *Cluster) ResetKeepData() { c.t.Helper(); c.reset(true) }

func (c *Cluster) reset(keep bool) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := c.cl.Reset(ctx, cluster.ResetOptions{KeepData: keep, Timeout: opTimeout}); err != nil {
		c.t.Fatalf("rclustertest: reset: %v", err)
	}
}
