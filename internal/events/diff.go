package events

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rcluster/rcluster/internal/topology"
)

// View is what one node answered to CLUSTER NODES in a polling round.
type View struct {
	// Nodes is its parsed CLUSTER NODES (with its myself line) when it
	// answered.
	Nodes []topology.Node
	// Err says why it gave no usable answer; "" when it answered.
	Err string
}

// Snapshot is what every node said in one polling round.
type Snapshot struct {
	// Time is when the round was read; the events Diff derives carry it.
	Time time.Time
	// Views holds each node's answer by the address it was read at.
	Views map[string]View
}

// Diff returns the events that lead from prev to cur, from the cluster's
// point of view, so that a sequence of snapshots yields each change once:
//
//   - unreachable / reachable: an address stops answering, or answers
//     again (an address first seen not answering is unreachable too);
//   - suspected: an observer flags a peer fail? (once per observer);
//   - failed / recovered: the first observer flags the node fail / the
//     last flag (fail or fail?) about it is cleared;
//   - failover: a replica took over (some of) its master's slots;
//   - slots: other slot owner changes, once per (old owner, new owner);
//   - role: a node's role or master changed;
//   - epoch: a master's config epoch changed other than by a failover.
//
// A node's role and epoch are what it says of itself when it answers, else
// what most of the others say. A slot's owner is the claim with the highest
// config epoch (Redis's own rule), a node that answers claiming only the
// slots it lists itself. Flags are compared only over the observers that
// answered in both snapshots, so an observer coming or going invents no
// change. A prev in which no node answered (the first round) gives only
// reachability events: it is a baseline, not a change.
func Diff(prev, cur Snapshot) []Event {
	d := &differ{p: derive(prev), c: derive(cur), t: cur.Time}
	if len(prev.Views) > 0 {
		d.reachability(prev, cur)
	}
	if len(d.p.obs) == 0 || len(d.c.obs) == 0 {
		return d.out
	}
	d.suspicions()
	d.failures()
	failedOver := d.slots()
	d.roles()
	d.epochs(failedOver)
	return d.out
}

// observer is a node that answered: itself, and what it says of the others.
type observer struct {
	addr  string
	me    topology.Node
	lines map[string]topology.Node // by id; not itself, no handshakes
}

// fact is a node's role and config epoch as the cluster knows it.
type fact struct {
	role   string // "master", "replica" or "" (neither flag)
	master string // the master's id, for a replica
	epoch  uint64
}

// state is one snapshot, digested.
type state struct {
	obs    []*observer          // one per node id, by address
	byAddr map[string]*observer // address read -> observer
	self   map[string]*observer // id -> observer
	facts  map[string]fact      // every known id
	addrs  map[string]string    // id -> address to name it by
	owners *ownerMap
}

func derive(s Snapshot) *state {
	st := &state{byAddr: map[string]*observer{}, self: map[string]*observer{}, facts: map[string]fact{}, addrs: map[string]string{}}
	for _, a := range sortedKeys(s.Views) {
		v := s.Views[a]
		if v.Err != "" {
			continue
		}
		me, ok := topology.Myself(v.Nodes)
		if !ok || st.self[me.ID] != nil {
			continue // no myself line, or the same node read at another address
		}
		o := &observer{addr: a, me: me, lines: make(map[string]topology.Node, len(v.Nodes))}
		for _, n := range v.Nodes {
			if !n.IsMyself() && !n.HasFlag("handshake") {
				o.lines[n.ID] = n
			}
		}
		st.obs = append(st.obs, o)
		st.byAddr[a] = o
		st.self[me.ID] = o
		st.addrs[me.ID] = a
	}
	votes := map[string]map[fact]int{}
	for _, o := range st.obs {
		for id, n := range o.lines {
			if st.addrs[id] == "" && dialable(n) {
				st.addrs[id] = n.Addr // any answering view's: they agree on addresses
			}
			if st.self[id] == nil {
				if votes[id] == nil {
					votes[id] = map[fact]int{}
				}
				votes[id][factOf(n)]++
			}
		}
	}
	for id, o := range st.self {
		st.facts[id] = factOf(o.me)
	}
	for id, vs := range votes {
		st.facts[id] = majority(vs)
	}
	st.owners = ownersOf(st)
	return st
}

func factOf(n topology.Node) fact {
	switch {
	case n.IsMaster():
		return fact{role: "master", epoch: n.Epoch}
	case n.IsReplica():
		return fact{role: "replica", master: n.MasterID, epoch: n.Epoch}
	}
	return fact{epoch: n.Epoch}
}

// majority is the most common fact; ties go to the smallest, so that the
// same views always give the same answer.
func majority(votes map[fact]int) fact {
	var best fact
	bestN := 0
	for f, n := range votes {
		if n > bestN || (n == bestN && lessFact(f, best)) {
			best, bestN = f, n
		}
	}
	return best
}

func lessFact(a, b fact) bool {
	if a.role != b.role {
		return a.role < b.role
	}
	if a.master != b.master {
		return a.master < b.master
	}
	return a.epoch < b.epoch
}

// dialable: a real address (not noaddr, not ":0").
func dialable(n topology.Node) bool {
	return n.Addr != "" && !strings.HasPrefix(n.Addr, ":") && !n.HasFlag("noaddr")
}

// ownerMap is the owner of every slot: ids[slot[s]], "" when unassigned.
type ownerMap struct {
	ids  []string
	slot [topology.SlotCount]uint16
}

func (m *ownerMap) owner(s int) string { return m.ids[m.slot[s]] }

// ownersOf resolves every claim to a slot the way Redis does: the highest
// config epoch wins. An answering node's claims are its own myself line's;
// for the others, every observer's line about them counts.
func ownersOf(st *state) *ownerMap {
	type claim struct {
		id    string
		epoch uint64
		r     topology.SlotRange
	}
	var claims []claim
	add := func(n topology.Node) {
		for _, r := range n.Slots {
			claims = append(claims, claim{n.ID, n.Epoch, r})
		}
	}
	for _, o := range st.obs {
		add(o.me)
		for id, n := range o.lines {
			if st.self[id] == nil {
				add(n)
			}
		}
	}
	sort.Slice(claims, func(i, j int) bool {
		if claims[i].epoch != claims[j].epoch {
			return claims[i].epoch < claims[j].epoch
		}
		return claims[i].id < claims[j].id
	})
	m := &ownerMap{ids: []string{""}}
	index := map[string]uint16{}
	for _, c := range claims {
		k, ok := index[c.id]
		if !ok {
			k = uint16(len(m.ids))
			index[c.id] = k
			m.ids = append(m.ids, c.id)
		}
		for s := max(c.r.Start, 0); s <= c.r.End && s < topology.SlotCount; s++ {
			m.slot[s] = k
		}
	}
	return m
}

type differ struct {
	p, c *state
	t    time.Time
	out  []Event
}

func (d *differ) emit(e Event) {
	e.Time = d.t
	d.out = append(d.out, e)
}

// name is the address of node id, from cur, else prev, else a short id.
func (d *differ) name(id string) string {
	if a := d.c.addrs[id]; a != "" {
		return a
	}
	if a := d.p.addrs[id]; a != "" {
		return a
	}
	if len(id) > 8 {
		return "id " + id[:8]
	}
	return "id " + id
}

// idAt is the id of the node read at addr in either snapshot.
func (d *differ) idAt(addr string) string {
	if o := d.c.byAddr[addr]; o != nil {
		return o.me.ID
	}
	if o := d.p.byAddr[addr]; o != nil {
		return o.me.ID
	}
	return ""
}

func (d *differ) reachability(prev, cur Snapshot) {
	for _, a := range sortedKeys(cur.Views) {
		c := cur.Views[a]
		p, known := prev.Views[a]
		switch {
		case c.Err != "" && (!known || p.Err == ""):
			d.emit(Event{Kind: KindUnreachable, Node: a, NodeID: d.idAt(a), Message: "not answering: " + c.Err})
		case c.Err == "" && known && p.Err != "":
			d.emit(Event{Kind: KindReachable, Node: a, NodeID: d.idAt(a), Message: "answering again"})
		}
	}
}

// common returns the observers that answered in both snapshots (same
// address, same node), as (prev, cur) pairs in address order.
func (d *differ) common() [][2]*observer {
	var out [][2]*observer
	for _, c := range d.c.obs {
		if p := d.p.byAddr[c.addr]; p != nil && p.me.ID == c.me.ID {
			out = append(out, [2]*observer{p, c})
		}
	}
	return out
}

func (d *differ) suspicions() {
	for _, pc := range d.common() {
		p, c := pc[0], pc[1]
		for _, id := range sortedKeys(c.lines) {
			n := c.lines[id]
			was, ok := p.lines[id]
			if n.PFailed() && ok && !was.PFailed() && !was.Failed() {
				d.emit(Event{Kind: KindSuspected, Node: d.name(id), NodeID: id, Peer: c.addr,
					Message: "suspected by " + c.addr + " (no reply within cluster-node-timeout)"})
			}
		}
	}
}

// Levels of trouble a node is in, over a set of observers.
const (
	levelOK = iota
	levelSuspected
	levelFailed
)

func level(obs []*observer, id string) int {
	l := levelOK
	for _, o := range obs {
		n, ok := o.lines[id]
		switch {
		case !ok:
		case n.Failed():
			return levelFailed
		case n.PFailed():
			l = levelSuspected
		}
	}
	return l
}

func (d *differ) failures() {
	pairs := d.common()
	var ps, cs []*observer
	ids := map[string]bool{}
	for _, pc := range pairs {
		ps, cs = append(ps, pc[0]), append(cs, pc[1])
		for id := range pc[1].lines {
			ids[id] = true
		}
	}
	for _, id := range byName(d, ids) {
		was, is := level(ps, id), level(cs, id)
		switch {
		case is == levelFailed && was != levelFailed:
			d.emit(Event{Kind: KindFailed, Node: d.name(id), NodeID: id, Message: "marked failed; " + d.failedBy(id)})
		case is == levelOK && was == levelFailed:
			d.emit(Event{Kind: KindRecovered, Node: d.name(id), NodeID: id, Message: "failure cleared: no answering node flags it fail any more"})
		case is == levelOK && was == levelSuspected:
			d.emit(Event{Kind: KindRecovered, Node: d.name(id), NodeID: id, Message: "no longer suspected by any answering node"})
		}
	}
}

// failedBy counts who flags id fail, as in "seen failed by 2 masters, 3
// replicas (of 5 answering)".
func (d *differ) failedBy(id string) string {
	masters, replicas := 0, 0
	for _, o := range d.c.obs {
		if n, ok := o.lines[id]; ok && n.Failed() {
			if o.me.IsMaster() {
				masters++
			} else {
				replicas++
			}
		}
	}
	var by []string
	if masters > 0 {
		by = append(by, plural(masters, "master"))
	}
	if replicas > 0 {
		by = append(by, plural(replicas, "replica"))
	}
	return fmt.Sprintf("seen failed by %s (of %d answering)", strings.Join(by, ", "), len(d.c.obs))
}

func plural(n int, s string) string {
	if n == 1 {
		return "1 " + s
	}
	return strconv.Itoa(n) + " " + s + "s"
}

// slots reports slot owner changes, grouped by (old owner, new owner); it
// returns the ids of the replicas that took over their master's slots.
func (d *differ) slots() map[string]bool {
	type move struct{ from, to string }
	var order []move
	ranges := map[move][]topology.SlotRange{}
	for s := 0; s < topology.SlotCount; s++ {
		from, to := d.p.owners.owner(s), d.c.owners.owner(s)
		if from == to {
			continue
		}
		m := move{from, to}
		rs, seen := ranges[m]
		if !seen {
			order = append(order, m)
		}
		if k := len(rs); k > 0 && rs[k-1].End == s-1 {
			rs[k-1].End = s
		} else {
			rs = append(rs, topology.SlotRange{Start: s, End: s})
		}
		ranges[m] = rs
	}
	failedOver := map[string]bool{}
	for _, m := range order {
		slots := topology.FormatRanges(ranges[m])
		was := d.p.facts[m.to]
		e := Event{Kind: KindSlots, Slots: slots}
		switch {
		case m.from != "" && m.to != "" && was.role == "replica" && was.master == m.from:
			epoch := d.c.facts[m.to].epoch
			e = Event{Kind: KindFailover, Node: d.name(m.to), NodeID: m.to, From: d.name(m.from), To: d.name(m.to), Slots: slots, Epoch: epoch,
				Message: fmt.Sprintf("took over slots %s from its master %s (config epoch %d)", slots, d.name(m.from), epoch)}
			failedOver[m.to] = true
		case m.to == "":
			e.Node, e.NodeID, e.From = d.name(m.from), m.from, d.name(m.from)
			e.Message = "slots " + slots + " no longer served (were " + d.name(m.from) + "'s)"
		case m.from == "":
			e.Node, e.NodeID, e.To = d.name(m.to), m.to, d.name(m.to)
			e.Message = "now serves slots " + slots + " (were unassigned)"
		default:
			e.Node, e.NodeID, e.From, e.To = d.name(m.to), m.to, d.name(m.from), d.name(m.to)
			e.Message = "now serves slots " + slots + " (were " + d.name(m.from) + "'s)"
		}
		d.emit(e)
	}
	return failedOver
}

func (d *differ) describe(f fact) string {
	if f.role == "replica" {
		return "replica of " + d.name(f.master)
	}
	return f.role
}

func (d *differ) roles() {
	for _, id := range byName(d, d.c.facts) {
		c := d.c.facts[id]
		p, ok := d.p.facts[id]
		if !ok || p.role == "" || c.role == "" || (p.role == c.role && p.master == c.master) {
			continue
		}
		from, to := d.describe(p), d.describe(c)
		d.emit(Event{Kind: KindRole, Node: d.name(id), NodeID: id, From: from, To: to, Message: from + " -> " + to})
	}
}

// epochs reports masters' config epoch changes. A replica shows its
// master's epoch, and a failover reports its own.
func (d *differ) epochs(failedOver map[string]bool) {
	for _, id := range byName(d, d.c.facts) {
		c := d.c.facts[id]
		p, ok := d.p.facts[id]
		if !ok || p.role != "master" || c.role != "master" || p.epoch == c.epoch || failedOver[id] {
			continue
		}
		d.emit(Event{Kind: KindEpoch, Node: d.name(id), NodeID: id, Epoch: c.epoch,
			From: strconv.FormatUint(p.epoch, 10), To: strconv.FormatUint(c.epoch, 10),
			Message: fmt.Sprintf("config epoch %d -> %d", p.epoch, c.epoch)})
	}
}

// byName returns the ids of m sorted by the address they are named by.
func byName[V any](d *differ, m map[string]V) []string {
	ids := sortedKeys(m)
	sort.SliceStable(ids, func(i, j int) bool { return d.name(ids[i]) < d.name(ids[j]) })
	return ids
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
