package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/health"
	"github.com/rcluster/rcluster/internal/topology"
)

// NodeView is what one node says about the cluster.
type NodeView struct {
	Addr  string
	Err   error
	Nodes []topology.Node
	Me    topology.Node
	Info  map[string]string // CLUSTER INFO
	Repl  map[string]string // INFO replication
	// Shards is CLUSTER SHARDS (Redis >= 7.0); ShardsErr when it failed.
	Shards    []redis.ClusterShard
	ShardsErr error
}

// Snapshot is every node's view, gathered in parallel.
type Snapshot struct {
	Addrs []string
	Views []*NodeView // same order as Addrs
}

// OK returns the views of nodes that answered.
func (s *Snapshot) OK() []*NodeView {
	var out []*NodeView
	for _, v := range s.Views {
		if v.Err == nil {
			out = append(out, v)
		}
	}
	return out
}

// Answer is the view as health judges it.
func (v *NodeView) Answer() health.Answer {
	return health.Answer{Addr: v.Addr, Err: v.Err, Info: v.Info, Repl: v.Repl, Nodes: v.Nodes}
}

// Answers are every node's views as health judges them, in Addrs order.
func (s *Snapshot) Answers() []health.Answer {
	out := make([]health.Answer, len(s.Views))
	for i, v := range s.Views {
		out[i] = v.Answer()
	}
	return out
}

// reference is the slot map most answering nodes agree on: the one the
// slot map agreement check judges by, so client checks expect the owners
// it does.
func reference(s *Snapshot) *topology.SlotMap { return health.MajoritySlots(s.Answers()) }

// addrOf maps node ids to the addresses they announce (what MOVED names),
// using every view's self-description and, failing that, what others say.
func addrOf(s *Snapshot) map[string]string {
	m := map[string]string{}
	for _, v := range s.OK() {
		for _, n := range v.Nodes {
			if _, ok := m[n.ID]; !ok || n.IsMyself() {
				m[n.ID] = n.Addr
			}
		}
	}
	return m
}

// Gather discovers the cluster from the seeds and reads every node. A nil
// snapshot means nothing could be read at all; a non-nil error with a
// snapshot names the nodes that did not answer.
func Gather(ctx context.Context, o Options) (*Snapshot, error) {
	seeds := append(slices.Clone(o.Nodes), o.Seeds...)
	if len(seeds) == 0 {
		return nil, errNoSeeds
	}
	addrs := uniq(seeds)
	views := readAll(ctx, o, addrs)
	// Add every node any answering node knows about (with an address).
	known := slices.Clone(addrs)
	for _, v := range views {
		if v.Err != nil {
			continue
		}
		for _, n := range v.Nodes {
			if n.Addr != "" && !strings.HasPrefix(n.Addr, ":") && !n.HasFlag("noaddr") && !n.HasFlag("handshake") {
				known = append(known, n.Addr)
			}
		}
	}
	known = uniq(known)
	if len(known) > len(addrs) {
		extra := known[len(addrs):]
		views = append(views, readAll(ctx, o, extra)...)
		addrs = known
	}
	snap := &Snapshot{Addrs: addrs, Views: views}
	var errs []error
	for _, v := range views {
		if v.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", v.Addr, v.Err))
		}
	}
	if len(errs) == len(views) {
		return nil, errors.Join(errs...)
	}
	return snap, errors.Join(errs...)
}

func uniq(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range in {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

func readAll(ctx context.Context, o Options, addrs []string) []*NodeView {
	out := make([]*NodeView, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = readNode(ctx, o, a)
		}()
	}
	wg.Wait()
	return out
}

func readNode(ctx context.Context, o Options, addr string) *NodeView {
	v := &NodeView{Addr: addr}
	cl := o.Conn.Node(addr)
	defer cl.Close()
	// Bound every node by the per-call timeout even if it accepts TCP and
	// never answers (SIGSTOPped).
	cctx, cancel := context.WithTimeout(ctx, o.Conn.CallTimeout())
	defer cancel()
	pipe := cl.Pipeline()
	nodesCmd := pipe.ClusterNodes(cctx)
	infoCmd := pipe.ClusterInfo(cctx)
	replCmd := pipe.Info(cctx, "replication")
	shardsCmd := pipe.ClusterShards(cctx)
	_, _ = pipe.Exec(cctx)
	v.Shards, v.ShardsErr = shardsCmd.Result()
	if err := nodesCmd.Err(); err != nil {
		if strings.Contains(err.Error(), "cluster support disabled") {
			err = errors.New("not cluster-enabled (cluster support disabled)")
		}
		v.Err = err
		return v
	}
	if err := infoCmd.Err(); err != nil {
		v.Err = err
		return v
	}
	if err := replCmd.Err(); err != nil {
		v.Err = err
		return v
	}
	nodes, err := topology.ParseNodes(nodesCmd.Val())
	if err != nil {
		v.Err = err
		return v
	}
	v.Nodes = nodes
	if me, ok := topology.Myself(nodes); ok {
		v.Me = me
	}
	v.Info = topology.ParseInfo(infoCmd.Val())
	v.Repl = topology.ParseInfo(replCmd.Val())
	return v
}
