// Package reshard plans slot moves: which slots go from which master to
// which for `rcluster reshard`, `rcluster rebalance` and scaling by editing
// the spec. It is pure (no I/O); internal/migrate carries the moves out.
//
// The arithmetic is redis-cli 7.0.15's (clusterManagerComputeReshardTable
// and clusterManagerCommandRebalance in src/redis-cli.c), so that a user of
// `redis-cli --cluster reshard/rebalance` gets the plan they know; every
// place that differs says so in its doc comment. Plans are deterministic:
// wherever redis-cli's result depends on the order in which it happened to
// load the nodes, ties are broken by address (IP, then port) and then id, so
// the same slot map gives the same plan whichever node's view it came from.
// (Checked by hand against redis-cli 7.0.15 on real nodes: its reshard
// table and `rebalance --cluster-simulate` lines match these plans, up to
// that tie order.)
//
// The planners assume a healthy cluster (every master reachable, no open
// slot), which the caller checks first, as redis-cli's cluster check does.
package reshard

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/rcluster/rcluster/internal/topology"
)

// Move is one slot to move, with its keys, from master From to master To
// (node ids). It has the same fields as internal/migrate's Move, so
// migrate.Move(m) converts it (tags are ignored in conversions).
type Move struct {
	Slot     int
	From, To string
}

// Master is a master of the cluster with the slots it owns and the replicas
// that follow it (kept so that naming a replica as a source or target gets
// an error that says whose replica it is).
type Master struct {
	ID       string
	Addr     string
	Slots    []topology.SlotRange // sorted and merged
	Replicas []Replica
}

// Replica is a replica of a Master.
type Replica struct {
	ID, Addr string
}

// SlotCount is the number of slots the master owns.
func (m Master) SlotCount() int { return topology.CountSlots(m.Slots) }

// Empty reports whether the master owns no slot: a new master, or one whose
// slots were all moved away. Rebalance leaves empty masters out unless
// RebalanceOptions.UseEmptyMasters is set.
func (m Master) Empty() bool { return m.SlotCount() == 0 }

func (m Master) String() string { return describe(m.ID, m.Addr) }

func describe(id, addr string) string {
	if addr == "" {
		return "node " + id
	}
	return addr + " (id " + id + ")"
}

// Masters returns the masters of one CLUSTER NODES view, each with its
// merged slot ranges and its replicas, ordered by address. Nodes that are
// neither master nor replica (a handshake in progress) are left out, and so
// are replicas of a master the view does not list.
func Masters(view []topology.Node) []Master {
	var out []Master
	at := map[string]int{}
	for _, n := range view {
		if n.IsMaster() && !n.IsReplica() {
			at[n.ID] = len(out)
			out = append(out, Master{ID: n.ID, Addr: n.Addr, Slots: topology.MergeRanges(n.Slots)})
		}
	}
	for _, n := range view {
		if i, ok := at[n.MasterID]; ok && n.IsReplica() {
			out[i].Replicas = append(out[i].Replicas, Replica{ID: n.ID, Addr: n.Addr})
		}
	}
	sortMasters(out)
	return out
}

// sortMasters orders masters by IP, then port (as a number), then id: the
// tie-break of every plan.
func sortMasters(ms []Master) {
	sort.SliceStable(ms, func(i, j int) bool { return addrLess(ms[i], ms[j]) })
}

func addrLess(a, b Master) bool {
	ha, pa := splitAddr(a.Addr)
	hb, pb := splitAddr(b.Addr)
	if ha != hb {
		return ha < hb
	}
	if pa != pb {
		return pa < pb
	}
	return a.ID < b.ID
}

func splitAddr(addr string) (string, int) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

// ErrBadInput is wrapped by every error about the arguments of a plan (an
// unknown node, a replica where a master is needed, a count or weight out of
// range): a CLI reports it as a usage error. Such an error changes nothing.
var ErrBadInput = errors.New("bad input")

type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }
func (e *inputError) Unwrap() error { return ErrBadInput }

func badInput(format string, args ...any) error {
	return &inputError{msg: fmt.Sprintf(format, args...)}
}

// cluster is the working copy a planner changes as it plans: the masters in
// address order, each with its slots as an ascending list.
type cluster struct {
	ms    []Master
	slots [][]int
}

// load checks the masters (ids unique and non-empty, slots in range, no
// slot owned twice) and makes the working copy.
func load(masters []Master) (*cluster, error) {
	c := &cluster{ms: append([]Master(nil), masters...)}
	sortMasters(c.ms)
	var owner [topology.SlotCount]int // index+1 of the owning master
	seen := map[string]string{}       // lower-case id -> what it is
	for i, m := range c.ms {
		if m.ID == "" {
			return nil, badInput("master at %q has no node id", m.Addr)
		}
		if what, dup := seen[strings.ToLower(m.ID)]; dup {
			return nil, badInput("node id %s appears twice (%s and master %s)", m.ID, what, m.Addr)
		}
		seen[strings.ToLower(m.ID)] = "master " + m.Addr
		for _, r := range m.Replicas {
			if what, dup := seen[strings.ToLower(r.ID)]; dup {
				return nil, badInput("node id %s appears twice (%s and replica %s)", r.ID, what, r.Addr)
			}
			seen[strings.ToLower(r.ID)] = "replica " + r.Addr
		}
		for _, r := range m.Slots {
			if r.Start < 0 || r.End >= topology.SlotCount || r.End < r.Start {
				return nil, badInput("master %s: slot range %d-%d is not within 0-%d", m, r.Start, r.End, topology.SlotCount-1)
			}
		}
		list := make([]int, 0, m.SlotCount())
		for _, r := range m.Slots {
			for s := r.Start; s <= r.End; s++ {
				if owner[s] == i+1 {
					return nil, badInput("master %s lists slot %d twice", m, s)
				}
				if o := owner[s]; o != 0 {
					return nil, badInput("slot %d is owned by both %s and %s", s, c.ms[o-1], m)
				}
				owner[s] = i + 1
				list = append(list, s)
			}
		}
		sort.Ints(list)
		c.slots = append(c.slots, list)
	}
	return c, nil
}

// find returns the index of the master with the given id (compared
// case-insensitively, as redis-cli does). role ("target", "source", ...)
// names the argument in the error: an unknown id lists the masters, a
// replica's id says whose replica it is.
func (c *cluster) find(role, id string) (int, error) {
	for i, m := range c.ms {
		if strings.EqualFold(m.ID, id) {
			return i, nil
		}
	}
	for _, m := range c.ms {
		for _, r := range m.Replicas {
			if strings.EqualFold(r.ID, id) {
				return 0, badInput("%s %s is a replica of %s, not a master", role, describe(r.ID, r.Addr), m)
			}
		}
	}
	names := make([]string, len(c.ms))
	for i, m := range c.ms {
		names[i] = m.String()
	}
	return 0, badInput("%s %q: no master has this node id (the masters are %s)", role, id, strings.Join(names, ", "))
}

// findAll resolves a list of ids with find; an id listed twice is an error.
func (c *cluster) findAll(role string, ids []string) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for _, id := range ids {
		i, err := c.find(role, id)
		if err != nil {
			return nil, err
		}
		if seen[i] {
			return nil, badInput("%s %s is listed twice", role, c.ms[i])
		}
		seen[i] = true
		out = append(out, i)
	}
	return out, nil
}

// give plans moving the k lowest-numbered slots master from still owns to
// master to, appending the moves to out.
func (c *cluster) give(out []Move, from, to, k int) []Move {
	moved := c.slots[from][:k]
	c.slots[from] = c.slots[from][k:]
	for _, s := range moved {
		out = append(out, Move{Slot: s, From: c.ms[from].ID, To: c.ms[to].ID})
	}
	c.slots[to] = append(c.slots[to], moved...)
	return out
}

func (c *cluster) count(i int) int { return len(c.slots[i]) }

// Apply returns the masters as they are after the moves (what a dry run
// shows): each move's slot leaves From and joins To. It fails, naming the
// move, when From does not own the slot at that point or a node is unknown,
// so it also checks a plan.
func Apply(masters []Master, moves []Move) ([]Master, error) {
	c, err := load(masters)
	if err != nil {
		return nil, err
	}
	var owner [topology.SlotCount]int
	for i, list := range c.slots {
		for _, s := range list {
			owner[s] = i + 1
		}
	}
	index := map[string]int{} // id as given -> master, to skip find's scan
	lookup := func(k int, role, id string) (int, error) {
		if i, ok := index[id]; ok {
			return i, nil
		}
		i, err := c.find("move "+strconv.Itoa(k)+" "+role, id)
		if err == nil {
			index[id] = i
		}
		return i, err
	}
	for k, mv := range moves {
		if mv.Slot < 0 || mv.Slot >= topology.SlotCount {
			return nil, badInput("move %d: slot %d is not within 0-%d", k, mv.Slot, topology.SlotCount-1)
		}
		from, err := lookup(k, "source", mv.From)
		if err != nil {
			return nil, err
		}
		to, err := lookup(k, "target", mv.To)
		if err != nil {
			return nil, err
		}
		if owner[mv.Slot] != from+1 {
			return nil, badInput("move %d: slot %d is not owned by %s at that point", k, mv.Slot, c.ms[from])
		}
		owner[mv.Slot] = to + 1
	}
	out := make([]Master, len(c.ms))
	for i, m := range c.ms {
		m.Slots = nil
		for s := 0; s < topology.SlotCount; s++ {
			if owner[s] != i+1 {
				continue
			}
			if k := len(m.Slots); k > 0 && m.Slots[k-1].End == s-1 {
				m.Slots[k-1].End = s
			} else {
				m.Slots = append(m.Slots, topology.SlotRange{Start: s, End: s})
			}
		}
		out[i] = m
	}
	return out, nil
}
