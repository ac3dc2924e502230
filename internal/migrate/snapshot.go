package migrate

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/health"
	"github.com/rcluster/rcluster/internal/topology"
)

// view is one node's CLUSTER NODES, or why it gave none.
type view struct {
	addr  string
	err   error
	nodes []topology.Node
	me    topology.Node
}

// snapshot is every node reachable from the seeds, read once. Open slots
// are only ever shown on a node's own myself line, so each node that
// answers is described by what it says of itself.
type snapshot struct {
	views []*view          // answering or not, seeds first, each node once
	self  map[string]*view // by node id: the nodes that answered
	ref   *view            // the first that answered
}

// read reads CLUSTER NODES from the seeds, then from every node they name,
// until no new node appears (at most 4 rounds: membership changing under
// the read is not a state to migrate in).
func (e *engine) read(ctx context.Context, seeds []string) (*snapshot, error) {
	known := map[string]bool{}
	var addrs []string
	learn := func(a string) {
		if a != "" && !known[a] {
			known[a] = true
			addrs = append(addrs, a)
		}
	}
	for _, s := range seeds {
		learn(s)
	}
	var views []*view
	done := 0
	for range 4 {
		batch := addrs[done:]
		done = len(addrs)
		vs := make([]*view, len(batch))
		var wg sync.WaitGroup
		for i, a := range batch {
			wg.Go(func() { vs[i] = e.readView(ctx, a) })
		}
		wg.Wait()
		views = append(views, vs...)
		for _, v := range vs {
			for _, n := range v.nodes {
				if dialable(n) {
					learn(n.Addr)
				}
			}
		}
		if len(addrs) == done || ctx.Err() != nil {
			break
		}
	}
	s := &snapshot{self: map[string]*view{}}
	for _, v := range views {
		if v.err == nil {
			if s.self[v.me.ID] != nil {
				continue // one node read under two addresses
			}
			s.self[v.me.ID] = v
			if s.ref == nil {
				s.ref = v
			}
		}
		s.views = append(s.views, v)
	}
	if s.ref == nil {
		var errs []error
		for _, v := range views {
			errs = append(errs, errors.New(v.addr+": "+v.err.Error()))
		}
		if len(errs) == 0 {
			return nil, errors.New("no seed address given")
		}
		return nil, errors.Join(append([]error{errors.New("no node answered")}, errs...)...)
	}
	return s, nil
}

func (e *engine) readView(ctx context.Context, addr string) *view {
	v := &view{addr: addr}
	text, err := e.call(ctx, addr, "CLUSTER", "NODES").Text()
	if err == nil {
		v.nodes, err = topology.ParseNodes(text)
	}
	if err == nil {
		var ok bool
		if v.me, ok = topology.Myself(v.nodes); !ok {
			err = errors.New("CLUSTER NODES has no myself line")
		}
	}
	v.err = err
	if err == nil && !dialable(v.me) {
		v.me.Addr = addr // a node that does not know its own IP yet
	}
	return v
}

// dialable: the node has a real address (not noaddr, not a handshake).
func dialable(n topology.Node) bool {
	return n.Addr != "" && !strings.HasPrefix(n.Addr, ":") && !n.HasFlag("noaddr") && !n.HasFlag("handshake")
}

// node returns the node with this id: its own myself line when it
// answered, else as the first answering view lists it.
func (s *snapshot) node(id string) (topology.Node, bool) {
	if v := s.self[id]; v != nil {
		return v.me, true
	}
	return topology.FindNode(s.ref.nodes, id)
}

func (s *snapshot) answered(id string) bool { return s.self[id] != nil }

// name is "addr (id prefix)" for messages.
func (s *snapshot) name(id string) string {
	short := id
	if len(short) > 8 {
		short = short[:8]
	}
	if n, ok := s.node(id); ok && n.Addr != "" {
		return n.Addr + " (" + short + ")"
	}
	return short
}

// list names every node of the reference view, for "unknown node" errors.
func (s *snapshot) list() string {
	var out []string
	for _, n := range s.ref.nodes {
		role := "master"
		if n.IsReplica() {
			role = "replica"
		}
		out = append(out, n.Addr+" "+n.ID+" "+role)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// masters are the answering nodes that say they are masters, seeds first.
func (s *snapshot) masters() []topology.Node {
	var out []topology.Node
	for _, v := range s.views {
		if v.err == nil && v.me.IsMaster() {
			out = append(out, v.me)
		}
	}
	return out
}

// owners is the slot map most answering nodes agree on (internal/health's
// reference for slot agreement).
func (s *snapshot) owners() *topology.SlotMap {
	var answers []health.Answer
	for _, v := range s.views {
		answers = append(answers, health.Answer{Addr: v.addr, Err: v.err, Nodes: v.nodes})
	}
	return health.MajoritySlots(answers)
}

// openSlots is every slot some answering master has migrating or
// importing, sorted.
func (s *snapshot) openSlots() []int {
	set := map[int]bool{}
	for _, m := range s.masters() {
		for _, x := range m.OpenSlots() {
			set[x] = true
		}
	}
	out := make([]int, 0, len(set))
	for x := range set {
		out = append(out, x)
	}
	sort.Ints(out)
	return out
}

// counts reads COUNTKEYSINSLOT for each slot on each answering master
// (one pipeline per master, in parallel): counts[id][slot].
func (e *engine) counts(ctx context.Context, masters []topology.Node, slots []int) (map[string]map[int]int64, error) {
	out := make(map[string]map[int]int64, len(masters))
	errs := make([]error, len(masters))
	res := make([]map[int]int64, len(masters))
	var wg sync.WaitGroup
	for i, m := range masters {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, e.conn.CallTimeout())
			defer cancel()
			pipe := e.client(m.Addr).Pipeline()
			cmds := make([]*redis.IntCmd, len(slots))
			for j, s := range slots {
				cmds[j] = pipe.ClusterCountKeysInSlot(cctx, s)
			}
			if _, err := pipe.Exec(cctx); err != nil {
				errs[i] = errors.New("node " + m.Addr + ": cluster countkeysinslot: " + err.Error())
				return
			}
			res[i] = make(map[int]int64, len(slots))
			for j, s := range slots {
				res[i][s] = cmds[j].Val()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i, m := range masters {
		out[m.ID] = res[i]
	}
	return out, nil
}
