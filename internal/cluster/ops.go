package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rcluster/rcluster/internal/events"
	"github.com/rcluster/rcluster/internal/failover"
	"github.com/rcluster/rcluster/internal/provider"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/topology"
)

// Operations that change a running cluster (rcluster failover, node,
// reset). Each returns only when every reachable node agrees on the result
// (internal/failover's convergence, judged by internal/health), or fails
// within its timeout naming the node that does not agree.

// DefaultOpTimeout bounds an operation whose options give none.
const DefaultOpTimeout = 60 * time.Second

// UnknownNodeError is a node name that is none of the cluster's nodes (a
// usage error: nothing was changed). Nodes lists the cluster's nodes.
type UnknownNodeError struct {
	Name  string
	Nodes []string
}

func (e *UnknownNodeError) Error() string {
	return fmt.Sprintf("%q is not a node of this cluster (a port, host:port or node id); its nodes: %s; nothing was changed",
		e.Name, strings.Join(e.Nodes, ", "))
}

// Failover promotes a replica of target's shard (see failover.Failover)
// and returns when every reachable node agrees. An unknown node is an
// *UnknownNodeError.
func (c *Cluster) Failover(ctx context.Context, target failover.Target, o failover.Options) (*failover.Result, error) {
	if err := c.ensureConn(); err != nil {
		return nil, err
	}
	what := fmt.Sprintf("failover of %s (%s)", target, o.Mode)
	c.record(events.Event{Kind: events.KindOp, Message: what + ": started"})
	res, err := failover.Failover(ctx, c.Spec.Addrs(), c.Conn, target, o)
	if errors.Is(err, failover.ErrUnknownNode) {
		err = &UnknownNodeError{Name: strings.TrimPrefix(target.String(), "node "), Nodes: c.nodeNames(ctx)}
	}
	if err != nil {
		c.record(outcome(events.KindOp, "", what, err, ""))
		return nil, err
	}
	c.record(failoverEvent(res), outcome(events.KindOp, res.New.Addr, what, nil, "every node agrees after "+res.Agreed.Round(time.Millisecond).String()))
	return res, nil
}

// failoverEvent is a finished takeover as an event.
func failoverEvent(r *failover.Result) events.Event {
	return events.Event{Kind: events.KindFailover, Node: r.New.Addr, NodeID: r.New.ID, From: r.Old.Addr, To: r.New.Addr,
		Slots: topology.FormatRanges(r.Slots), Message: "took over from " + r.Old.Addr + ": " + r.String()}
}

// ensureConn re-reads the client settings (generated TLS material exists
// once the cluster ran).
func (c *Cluster) ensureConn() error {
	if c.Spec.TLS == nil {
		return nil
	}
	return c.refreshConn()
}

// NodeOp is what `rcluster node` does to nodes.
type NodeOp string

// The node operations.
const (
	Kill      NodeOp = "kill"
	Stop      NodeOp = "stop"
	Start     NodeOp = "start"
	Restart   NodeOp = "restart"
	Pause     NodeOp = "pause"
	Resume    NodeOp = "resume"
	Partition NodeOp = "partition"
	Heal      NodeOp = "heal"
)

// NodeOps lists every NodeOp.
var NodeOps = []NodeOp{Kill, Stop, Start, Restart, Pause, Resume, Partition, Heal}

// faults are the ops after which a master's replica may take over.
func (op NodeOp) fault() bool { return op == Kill || op == Stop || op == Pause || op == Partition }

// NodeOptions tune Node.
type NodeOptions struct {
	// WaitFailover (kill, stop, pause, partition of masters): return only
	// when a replica of each has taken over on every reachable node and
	// the cluster is ok again.
	WaitFailover bool
	// Timeout bounds the whole operation (default DefaultOpTimeout).
	Timeout time.Duration
}

// NodeResult is what Node did to one node.
type NodeResult struct {
	Node string `json:"node"`
	Op   NodeOp `json:"op"`
	// Failover is the replica's takeover that --wait-failover waited for.
	Failover *failover.Result `json:"failover,omitempty"`
	// Took is how long the operation took for this node, waits included.
	Took time.Duration `json:"took_ns"`
}

// Node applies op to the named nodes (ports, host:port or node ids) through
// the cluster's runtime, all of them at once. Faults (kill, stop, pause,
// partition) return when their effect is visible: the process gone, the
// node frozen; with o.WaitFailover, when a replica of every faulted master
// has taken over everywhere (refused up front, changing nothing, for a
// master without a replica). Repairs (start, restart, resume, heal) return
// when every reachable node agrees the cluster is healthy with the node
// back. Names that match no node are an *UnknownNodeError and change
// nothing; runtime external refuses every op (provider.ErrNotOurs).
func (c *Cluster) Node(ctx context.Context, op NodeOp, names []string, o NodeOptions) ([]NodeResult, error) {
	if !slices.Contains(NodeOps, op) {
		return nil, fmt.Errorf("unknown node operation %q (want one of %v)", op, NodeOps)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultOpTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := c.ensureConn(); err != nil {
		return nil, err
	}
	nodes, err := c.resolve(ctx, names)
	if err != nil {
		return nil, err
	}
	prov, err := c.provider(ctx)
	if err != nil {
		return nil, err
	}
	defer prov.Close()

	var masters map[string]bool // addr -> a master with slots, to wait for
	if op.fault() && o.WaitFailover {
		if masters, err = c.checkHeirs(ctx, nodes); err != nil {
			return nil, err
		}
	}
	if op == Start {
		// Starting a node that runs is nothing to do (not a busy port).
		states, err := prov.Inspect(ctx)
		if err != nil {
			return nil, err
		}
		nodes = slices.DeleteFunc(nodes, func(n spec.Node) bool {
			return slices.ContainsFunc(states, func(st provider.NodeState) bool { return st.Node == n && st.Running })
		})
	}
	start := time.Now()
	res := make([]NodeResult, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		res[i] = NodeResult{Node: n.Addr(), Op: op}
		wg.Go(func() { errs[i] = apply(ctx, prov, op, n) })
	}
	wg.Wait()
	for i, n := range nodes {
		c.record(outcome(events.KindNode, n.Addr(), string(op), errs[i], "done"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	switch {
	case op.fault() && o.WaitFailover:
		err = c.waitHeirs(ctx, nodes, masters, res)
		for _, r := range res {
			if r.Failover != nil {
				c.record(failoverEvent(r.Failover))
			}
		}
	case !op.fault():
		err = c.waitHealthy(ctx, prov)
		if err == nil {
			c.record(events.Event{Kind: events.KindNode, Message: fmt.Sprintf("%s of %s: every node agrees the cluster is healthy", op, strings.Join(names, " "))})
		}
	}
	for i := range res {
		res[i].Took = time.Since(start)
	}
	return res, err
}

// apply does op to one node through its provider.
func apply(ctx context.Context, prov provider.Provider, op NodeOp, n spec.Node) error {
	switch op {
	case Kill:
		return prov.Kill(ctx, n)
	case Stop:
		return prov.StopNode(ctx, n)
	case Start:
		return prov.StartNode(ctx, n)
	case Restart:
		if err := prov.StopNode(ctx, n); err != nil {
			return err
		}
		return prov.StartNode(ctx, n)
	case Pause:
		return prov.Pause(ctx, n)
	case Resume:
		return prov.Resume(ctx, n)
	case Partition:
		return prov.Partition(ctx, n)
	case Heal:
		return prov.Heal(ctx, n)
	}
	return fmt.Errorf("node %s: unknown operation %q", n.Addr(), op)
}

// checkHeirs finds which of nodes are masters owning slots, and refuses,
// before anything is done, a master with no replica to take over.
func (c *Cluster) checkHeirs(ctx context.Context, nodes []spec.Node) (map[string]bool, error) {
	view, err := c.liveView(ctx)
	if err != nil {
		return nil, err
	}
	masters := map[string]bool{}
	for _, n := range nodes {
		me, ok := byAddr(view, n.Addr())
		if !ok || !me.IsMaster() || len(me.Slots) == 0 {
			continue
		}
		heirs := 0
		for _, r := range view {
			if r.IsReplica() && r.MasterID == me.ID && !r.HasFlag("fail") && !r.HasFlag("nofailover") {
				heirs++
			}
		}
		if heirs == 0 {
			return nil, fmt.Errorf("%w: master %s (slots %s) has no replica that could take over; nothing was done; "+
				"drop --wait-failover to fault it anyway (the cluster will be down until it is back)",
				failover.ErrNoReplica, n.Addr(), topology.FormatRanges(me.Slots))
		}
		masters[n.Addr()] = true
	}
	return masters, nil
}

// waitHeirs waits, for every faulted master, until a replica took over.
func (c *Cluster) waitHeirs(ctx context.Context, nodes []spec.Node, masters map[string]bool, res []NodeResult) error {
	var seeds []string
	for _, a := range c.Spec.Addrs() {
		if !slices.ContainsFunc(nodes, func(n spec.Node) bool { return n.Addr() == a }) {
			seeds = append(seeds, a)
		}
	}
	for i, n := range nodes {
		if !masters[n.Addr()] {
			continue
		}
		fr, err := failover.WaitFailover(ctx, seeds, c.Conn, n.Addr(), failover.Options{})
		if err != nil {
			return fmt.Errorf("node %s: wait for failover: %w", n.Addr(), err)
		}
		res[i].Failover = fr
	}
	return nil
}

// waitHealthy waits until every reachable node agrees the cluster is
// healthy, nodes the runtime reports down or paused taking no part.
func (c *Cluster) waitHealthy(ctx context.Context, prov provider.Provider) error {
	states, err := prov.Inspect(ctx)
	if err != nil {
		return err
	}
	var down, seeds []string
	for _, st := range states {
		if !st.Running || st.Paused || st.Partitioned {
			down = append(down, st.Node.Addr())
		} else {
			seeds = append(seeds, st.Node.Addr())
		}
	}
	if len(seeds) == 0 {
		return errors.New("no node of the cluster runs")
	}
	if _, err := failover.WaitConverged(ctx, seeds, c.Conn, failover.Want{Down: down, OpenSlotPairs: true}); err != nil {
		return fmt.Errorf("cluster did not agree it is healthy: %w", err)
	}
	return nil
}

// resolve maps node names (port, host:port, node id or a unique id
// prefix of at least 4 characters) to spec nodes, in order, without
// duplicates.
func (c *Cluster) resolve(ctx context.Context, names []string) ([]spec.Node, error) {
	if len(names) == 0 {
		return nil, &UnknownNodeError{Name: "", Nodes: c.nodeNames(ctx)}
	}
	nodes := c.Spec.Nodes()
	var ids []topology.Node
	var out []spec.Node
	for _, name := range names {
		n, ok := matchAddr(nodes, name)
		if !ok {
			if ids == nil {
				ids, _ = c.liveView(ctx)
			}
			n, ok = matchID(nodes, ids, name)
		}
		if !ok {
			return nil, &UnknownNodeError{Name: name, Nodes: c.nodeNames(ctx)}
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

func matchAddr(nodes []spec.Node, name string) (spec.Node, bool) {
	if p, err := strconv.Atoi(name); err == nil {
		var hit []spec.Node
		for _, n := range nodes {
			if n.Port == p {
				hit = append(hit, n)
			}
		}
		if len(hit) == 1 {
			return hit[0], true
		}
		return spec.Node{}, false
	}
	host, port, err := net.SplitHostPort(name)
	if err != nil {
		return spec.Node{}, false
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	for _, n := range nodes {
		if n.Host == host && strconv.Itoa(n.Port) == port {
			return n, true
		}
	}
	return spec.Node{}, false
}

func matchID(nodes []spec.Node, view []topology.Node, name string) (spec.Node, bool) {
	if len(name) < 4 {
		return spec.Node{}, false
	}
	var hit []topology.Node
	for _, v := range view {
		if strings.HasPrefix(v.ID, strings.ToLower(name)) {
			hit = append(hit, v)
		}
	}
	if len(hit) != 1 {
		return spec.Node{}, false
	}
	for _, n := range nodes {
		if n.Addr() == hit[0].Addr {
			return n, true
		}
	}
	return spec.Node{}, false
}

// liveView is the first answering spec node's CLUSTER NODES (viewOf).
func (c *Cluster) liveView(ctx context.Context) ([]topology.Node, error) {
	return c.viewOf(ctx, c.Spec.Nodes())
}

// nodeNames lists the cluster's nodes for messages: "127.0.0.1:7001
// (1a2b3c4d, master)", or just the addresses when no node answers.
func (c *Cluster) nodeNames(ctx context.Context) []string {
	view, _ := c.liveView(ctx)
	var out []string
	for _, n := range c.Spec.Nodes() {
		name := n.Addr()
		if v, ok := byAddr(view, n.Addr()); ok {
			role := "master"
			if v.IsReplica() {
				role = "replica"
			}
			name += fmt.Sprintf(" (%s, %s)", v.ID[:min(8, len(v.ID))], role)
		}
		out = append(out, name)
	}
	return out
}

func byAddr(view []topology.Node, addr string) (topology.Node, bool) {
	for _, v := range view {
		if v.Addr == addr {
			return v, true
		}
	}
	return topology.Node{}, false
}

func byID(view []topology.Node, id string) (topology.Node, bool) {
	for _, v := range view {
		if v.ID == id {
			return v, true
		}
	}
	return topology.Node{}, false
}
