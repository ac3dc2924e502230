package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/health"
	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/topology"
)

// view is what one node said: its CLUSTER NODES and, when asked for, its
// CLUSTER INFO.
type view struct {
	addr  string
	err   error
	nodes []topology.Node
	info  map[string]string
}

func (c *benchCluster) readView(ctx context.Context, addr string, withInfo bool) view {
	v := view{addr: addr}
	pipe := c.client(addr).Pipeline()
	nodes := pipe.ClusterNodes(ctx)
	var info *redis.StringCmd
	if withInfo {
		info = pipe.ClusterInfo(ctx)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		v.err = err
		return v
	}
	v.nodes, v.err = topology.ParseNodes(nodes.Val())
	if info != nil {
		v.info = topology.ParseInfo(info.Val())
	}
	return v
}

// answer is one node's answer as internal/health judges it.
func (c *benchCluster) answer(ctx context.Context, addr string) health.Answer {
	a := health.Answer{Addr: addr}
	pipe := c.client(addr).Pipeline()
	info := pipe.ClusterInfo(ctx)
	nodes := pipe.ClusterNodes(ctx)
	repl := pipe.Info(ctx, "replication")
	if _, a.Err = pipe.Exec(ctx); a.Err != nil {
		return a
	}
	a.Info, a.Repl = topology.ParseInfo(info.Val()), topology.ParseInfo(repl.Val())
	a.Nodes, a.Err = topology.ParseNodes(nodes.Val())
	return a
}

// waitSteady waits, untimed, until the cluster is healthy by rcluster's
// own definition (internal/health: every node ok, all views agree, links
// up) and every master's replicas have caught up with its replication
// offset, so that each timed step starts from the same settled state and
// neither path pays for the previous step's tail.
func (c *benchCluster) waitSteady(ctx context.Context) error {
	return c.waitSteadyAmong(ctx, c.addrs(), poll.Backoff{Min: 5 * time.Millisecond, Max: 100 * time.Millisecond})
}

// waitSteadyAmong is waitSteady for a cluster of exactly addrs, polled
// with b.
func (c *benchCluster) waitSteadyAmong(ctx context.Context, addrs []string, b poll.Backoff) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	for {
		why := c.unsteadyAmong(ctx, addrs)
		if why == "" {
			return nil
		}
		if err := b.Wait(ctx); err != nil {
			return fmt.Errorf("cluster %s not steady: %w (%s)", c.ports(), err, why)
		}
	}
}

// unsteady says why the cluster is not steady yet, or "".
func (c *benchCluster) unsteady(ctx context.Context) string { return c.unsteadyAmong(ctx, c.addrs()) }

// unsteadyAmong is unsteady for a cluster of exactly addrs (the hand way's
// nodes are not in the spec).
func (c *benchCluster) unsteadyAmong(ctx context.Context, addrs []string) string {
	answers := make([]health.Answer, len(addrs))
	for i, a := range addrs {
		answers[i] = c.answer(ctx, a)
	}
	if p := health.Judge(answers, len(addrs)); len(p) > 0 {
		return p[0].String()
	}
	offsets := map[string]string{} // master addr -> master_repl_offset
	for _, a := range answers {
		if a.Repl["role"] == "master" {
			offsets[a.Addr] = a.Repl["master_repl_offset"]
		}
	}
	for _, a := range answers {
		if a.Repl["role"] != "slave" {
			continue
		}
		m := a.Repl["master_host"] + ":" + a.Repl["master_port"]
		if got, want := a.Repl["slave_repl_offset"], offsets[m]; got != want {
			return fmt.Sprintf("%s: replica offset %s, its master %s at %s", a.Addr, got, m, want)
		}
	}
	return ""
}

// shard finds, in masterAddr's own view, that master and its one replica.
func (c *benchCluster) shard(ctx context.Context, masterAddr string) (master, replica topology.Node, err error) {
	v := c.readView(ctx, masterAddr, false)
	if v.err != nil {
		return master, replica, fmt.Errorf("node %s: cluster nodes: %w", masterAddr, v.err)
	}
	master, ok := topology.Myself(v.nodes)
	if !ok || !master.IsMaster() || len(master.Slots) == 0 {
		return master, replica, fmt.Errorf("node %s is not a master with slots (flags %v)", masterAddr, master.Flags)
	}
	for _, n := range v.nodes {
		if n.IsReplica() && n.MasterID == master.ID {
			return master, n, nil
		}
	}
	return master, replica, fmt.Errorf("master %s has no replica", masterAddr)
}

// promotedIn says what one node's view still lacks of a finished failover
// of old to new: new a master owning exactly slots, and old either its
// replica (oldFollows: a graceful failover) or owning no slots (old is
// dead). "" when the view shows it all.
func promotedIn(nodes []topology.Node, newID, oldID string, slots []topology.SlotRange, oldFollows bool) string {
	want := topology.FormatRanges(topology.MergeRanges(slots))
	nw, ok := topology.FindNode(nodes, newID)
	switch {
	case !ok:
		return "does not know " + short(newID)
	case !nw.IsMaster():
		return short(newID) + " not a master yet"
	case topology.FormatRanges(topology.MergeRanges(nw.Slots)) != want:
		return fmt.Sprintf("%s owns %q, want %q", short(newID), topology.FormatRanges(topology.MergeRanges(nw.Slots)), want)
	}
	old, ok := topology.FindNode(nodes, oldID)
	switch {
	case !ok:
		return "does not know " + short(oldID)
	case len(old.Slots) > 0:
		return short(oldID) + " still owns slots"
	case oldFollows && (!old.IsReplica() || old.MasterID != newID):
		return short(oldID) + " not a replica of " + short(newID) + " yet"
	}
	return ""
}

func short(id string) string { return id[:min(8, len(id))] }

// elections remembers when each node last won an election and when each
// master was last replaced, to keep a failover out of Redis 7.0's retry
// windows: a replica that began an election less than
// 2 x max(2 x node timeout, 2 s) ago waits (or "wins" with stale votes), and
// masters refuse to vote for a replica of the same master for
// 2 x node timeout after voting for one. Without this a run could measure
// Redis's back-off instead of the failover.
type elections struct{ won, replaced map[string]time.Time }

func (e *elections) record(newID, oldID string, at time.Time) {
	if e.won == nil {
		e.won, e.replaced = map[string]time.Time{}, map[string]time.Time{}
	}
	e.won[newID], e.replaced[oldID] = at, at
}

// readyAt is when candidate may be elected in place of master.
func (e *elections) readyAt(candidate, master string, nodeTimeout time.Duration) time.Time {
	const margin = 250 * time.Millisecond
	at := time.Time{}
	if t, ok := e.won[candidate]; ok {
		at = t.Add(2*max(2*nodeTimeout, 2*time.Second) + margin)
	}
	if t, ok := e.replaced[master]; ok {
		at = later(at, t.Add(2*nodeTimeout+margin))
	}
	return at
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// recordChanges records as elections every slot range that changed owner
// between two views of the cluster (before and after an operation whose
// failovers the harness did not see, such as reset's failbacks).
func (e *elections) recordChanges(before, after []topology.Node, at time.Time) {
	owners := topology.SlotOwners(before)
	for _, n := range after {
		if !n.IsMaster() || len(n.Slots) == 0 {
			continue
		}
		if prev := owners[n.Slots[0].Start]; prev != "" && prev != n.ID {
			e.record(n.ID, prev, at)
		}
	}
}

// waitElectable waits, untimed, until candidate may replace master.
func (c *benchCluster) waitElectable(ctx context.Context, candidate, master string) error {
	d := time.Until(c.elections.readyAt(candidate, master, c.nodeTimeout))
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// anyNodes is the CLUSTER NODES of the first node that answers.
func (c *benchCluster) anyNodes(ctx context.Context) ([]topology.Node, error) {
	var errs []error
	for _, a := range c.addrs() {
		v := c.readView(ctx, a, false)
		if v.err == nil {
			return v.nodes, nil
		}
		errs = append(errs, v.err)
	}
	return nil, fmt.Errorf("no node answered: %w", errors.Join(errs...))
}

// writeProbe is a client writing one key of a shard, every pause, until
// the first write is acknowledged: the moment that shard is writable
// again, seen from outside. It writes straight to the node expected to
// take over (which answers MOVED while it is a replica), so it measures
// the cluster, not a client's redirect handling.
type writeProbe struct {
	done chan struct{}
	at   time.Time
	err  error
}

func startWriteProbe(ctx context.Context, addr, key string, pause time.Duration) *writeProbe {
	p := &writeProbe{done: make(chan struct{})}
	cl := redisconn.Options{Timeout: 500 * time.Millisecond}.Node(addr)
	go func() {
		defer close(p.done)
		defer cl.Close()
		b := poll.Backoff{Min: pause, Max: pause}
		for {
			if p.err = cl.Set(ctx, key, "opsbench", 0).Err(); p.err == nil {
				p.at = time.Now()
				return
			}
			if b.Wait(ctx) != nil {
				return
			}
		}
	}()
	return p
}

// wait returns when the first write was acknowledged, or an error when ctx
// ended first.
func (p *writeProbe) wait(ctx context.Context) (time.Time, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		<-p.done
	}
	if p.at.IsZero() {
		return p.at, fmt.Errorf("no write acknowledged (last: %v)", p.err)
	}
	return p.at, nil
}

// keyOf is a key whose slot is the first of ranges.
func keyOf(ranges []topology.SlotRange) string { return topology.KeyForSlot(ranges[0].Start) }

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
