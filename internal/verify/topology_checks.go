package verify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/rcluster/rcluster/internal/topology"
)

const slotCount = 16384

func topologyChecks() []Check {
	return []Check{
		{Name: "cluster_state ok", Run: checkState},
		{Name: "slots covered", Run: checkCoverage},
		{Name: "slot map agreement", Run: checkAgreement},
		{Name: "no open slots", Run: checkOpenSlots},
		{Name: "no failed nodes", Run: checkFlags},
		{Name: "known nodes", Run: checkKnownNodes},
		{Name: "masters and replicas", Run: checkRoles},
		{Name: "replica links up", Run: checkReplicaLinks},
		{Name: "config epochs unique", Run: checkEpochs},
		{Name: "shards healthy", Run: checkShards},
	}
}

// problems collects failures; err joins them (at most 10 shown).
type problems []string

func (p *problems) add(format string, a ...any) { *p = append(*p, fmt.Sprintf(format, a...)) }

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	shown := p
	more := ""
	if len(shown) > 10 {
		shown, more = shown[:10], fmt.Sprintf("; and %d more", len(p)-10)
	}
	return errors.New(strings.Join(shown, "; ") + more)
}

// addrOf maps node ids to addresses using every view's self-description
// and, failing that, what others say.
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

func name(addrs map[string]string, id string) string {
	if a, ok := addrs[id]; ok && a != "" && !strings.HasPrefix(a, ":") {
		return a
	}
	if len(id) > 8 {
		return "node " + id[:8]
	}
	return "node " + id
}

func checkState(_ context.Context, e *Env) error {
	var p problems
	for _, v := range e.Snap.Views {
		switch {
		case v.Err != nil:
			p.add("%s: no answer (%v)", v.Addr, v.Err)
		case v.Info["cluster_state"] != "ok":
			p.add("%s: cluster_state:%s", v.Addr, v.Info["cluster_state"])
		}
	}
	return p.err()
}

// ownerMap returns slot -> owner id as one view sees it.
func ownerMap(v *NodeView) []string {
	owners := make([]string, slotCount)
	for _, n := range v.Nodes {
		if !n.IsMaster() {
			continue
		}
		for _, r := range n.Slots {
			for s := r.Start; s <= r.End && s < slotCount; s++ {
				if s >= 0 {
					owners[s] = n.ID
				}
			}
		}
	}
	return owners
}

// reference returns the slot map most answering nodes agree on.
func reference(s *Snapshot) []string {
	counts := map[string]int{}
	maps := map[string][]string{}
	for _, v := range s.OK() {
		m := ownerMap(v)
		k := strings.Join(m, ",")
		counts[k]++
		maps[k] = m
	}
	best, bestN := "", -1
	for k, n := range counts {
		if n > bestN || (n == bestN && k < best) {
			best, bestN = k, n
		}
	}
	if bestN < 0 {
		return make([]string, slotCount)
	}
	return maps[best]
}

// ranges groups consecutive slots with equal owners matching pred.
func ranges(owners []string, pred func(slot int) bool) []topology.SlotRange {
	var out []topology.SlotRange
	for s := 0; s < slotCount; s++ {
		if !pred(s) {
			continue
		}
		if n := len(out); n > 0 && out[n-1].End == s-1 && owners[out[n-1].Start] == owners[s] {
			out[n-1].End = s
			continue
		}
		out = append(out, topology.SlotRange{Start: s, End: s})
	}
	return out
}

// checkCoverage: every slot must be claimed by an answering master in its
// own view (as redis-cli --cluster check counts), or it names who the others
// think owns it.
func checkCoverage(_ context.Context, e *Env) error {
	ref := reference(e.Snap)
	addrs := addrOf(e.Snap)
	claimed := make([]string, slotCount)
	for _, v := range e.Snap.OK() {
		if !v.Me.IsMaster() {
			continue
		}
		for _, r := range v.Me.Slots {
			for s := max(r.Start, 0); s <= r.End && s < slotCount; s++ {
				claimed[s] = v.Me.ID
			}
		}
	}
	var p problems
	missing := ranges(ref, func(s int) bool { return claimed[s] == "" })
	for _, r := range missing {
		rs := topology.FormatRanges([]topology.SlotRange{r})
		switch o := ref[r.Start]; {
		case o == "":
			p.add("slots %s have no owner", rs)
		case addrs[o] != "" && !answers(e.Snap, o):
			p.add("slots %s are owned by %s, which does not answer", rs, name(addrs, o))
		default:
			p.add("slots %s are not served: %s does not claim them, though others think it does", rs, name(addrs, o))
		}
	}
	return p.err()
}

func answers(s *Snapshot, id string) bool {
	for _, v := range s.OK() {
		if v.Me.ID == id {
			return true
		}
	}
	return false
}

func checkAgreement(_ context.Context, e *Env) error {
	ref := reference(e.Snap)
	addrs := addrOf(e.Snap)
	var p problems
	for _, v := range e.Snap.OK() {
		m := ownerMap(v)
		diff := ranges(m, func(s int) bool { return m[s] != ref[s] })
		if len(diff) == 0 {
			continue
		}
		r := diff[0]
		sees := "no owner"
		if m[r.Start] != "" {
			sees = name(addrs, m[r.Start])
		}
		others := "no owner"
		if ref[r.Start] != "" {
			others = name(addrs, ref[r.Start])
		}
		p.add("%s disagrees on %d slots: it says %s belongs to %s, the others say %s",
			v.Addr, topology.CountSlots(diff), topology.FormatRanges([]topology.SlotRange{r}), sees, others)
	}
	return p.err()
}

func checkOpenSlots(_ context.Context, e *Env) error {
	addrs := addrOf(e.Snap)
	var p problems
	for _, v := range e.Snap.OK() {
		for _, slot := range sortedKeys(v.Me.Migrating) {
			p.add("slot %d is migrating on %s to %s", slot, v.Addr, name(addrs, v.Me.Migrating[slot]))
		}
		for _, slot := range sortedKeys(v.Me.Importing) {
			p.add("slot %d is importing on %s from %s", slot, v.Addr, name(addrs, v.Me.Importing[slot]))
		}
	}
	return p.err()
}

func sortedKeys(m map[int]string) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

func checkFlags(_ context.Context, e *Env) error {
	addrs := addrOf(e.Snap)
	var p problems
	for _, v := range e.Snap.OK() {
		for _, n := range v.Nodes {
			var bad []string
			for _, f := range []string{"fail", "fail?", "handshake", "noaddr"} {
				if n.HasFlag(f) {
					bad = append(bad, f)
				}
			}
			if len(bad) > 0 {
				p.add("%s sees %s as %s", v.Addr, name(addrs, n.ID), strings.Join(bad, ","))
			}
		}
	}
	return p.err()
}

func checkKnownNodes(_ context.Context, e *Env) error {
	addrs := addrOf(e.Snap)
	var p problems
	union := map[string]bool{}
	sets := map[string]map[string]bool{}
	for _, v := range e.Snap.OK() {
		set := map[string]bool{}
		for _, n := range v.Nodes {
			if n.HasFlag("handshake") {
				continue
			}
			set[n.ID] = true
			union[n.ID] = true
		}
		sets[v.Addr] = set
	}
	for _, v := range e.Snap.OK() {
		var missing []string
		for id := range union {
			if !sets[v.Addr][id] {
				missing = append(missing, name(addrs, id))
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			p.add("%s does not know %s", v.Addr, strings.Join(missing, ", "))
		}
	}
	if want := e.Opts.Expect.Nodes; want > 0 && len(union) != want {
		p.add("the cluster has %d nodes, expected %d", len(union), want)
	}
	return p.err()
}

func checkRoles(_ context.Context, e *Env) error {
	// Roles as each node says of itself.
	masters := map[string]string{} // id -> addr (masters owning slots)
	replicasOf := map[string][]string{}
	for _, v := range e.Snap.OK() {
		switch {
		case v.Me.IsMaster() && len(v.Me.Slots) > 0:
			masters[v.Me.ID] = v.Addr
		case v.Me.IsReplica():
			replicasOf[v.Me.MasterID] = append(replicasOf[v.Me.MasterID], v.Addr)
		}
	}
	addrs := addrOf(e.Snap)
	var p problems
	if want := e.Opts.Expect.Masters; want > 0 && len(masters) != want {
		p.add("%d masters own slots, expected %d", len(masters), want)
	}
	if want := e.Opts.Expect.Replicas; want >= 0 && e.Opts.Expect.Masters > 0 {
		ids := make([]string, 0, len(masters))
		for id := range masters {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return masters[ids[i]] < masters[ids[j]] })
		for _, id := range ids {
			if got := len(replicasOf[id]); got != want {
				p.add("master %s has %d replicas, expected %d", masters[id], got, want)
			}
		}
	}
	for mid, reps := range replicasOf {
		if _, ok := masters[mid]; !ok {
			p.add("%s replicate %s, which is not a master owning slots", strings.Join(reps, ", "), name(addrs, mid))
		}
	}
	return p.err()
}

func checkReplicaLinks(_ context.Context, e *Env) error {
	var p problems
	for _, v := range e.Snap.OK() {
		if v.Repl["role"] != "slave" {
			continue
		}
		if st := v.Repl["master_link_status"]; st != "up" {
			p.add("%s: master_link_status:%s (master %s:%s)", v.Addr, st, v.Repl["master_host"], v.Repl["master_port"])
		}
	}
	return p.err()
}

func checkEpochs(_ context.Context, e *Env) error {
	seen := map[uint64]string{}
	var p problems
	for _, v := range e.Snap.OK() {
		if !v.Me.IsMaster() || len(v.Me.Slots) == 0 {
			continue
		}
		if other, dup := seen[v.Me.Epoch]; dup {
			p.add("%s and %s share config epoch %d", other, v.Addr, v.Me.Epoch)
			continue
		}
		seen[v.Me.Epoch] = v.Addr
	}
	return p.err()
}

// checkShards reads CLUSTER SHARDS health. Redis 7.0 reports a replica as
// "loading" while the offset it gossips is still 0, which lasts until the
// first replication traffic even though its link is up; such a replica is
// judged by its own INFO replication instead.
func checkShards(_ context.Context, e *Env) error {
	self := map[string]*NodeView{}
	for _, v := range e.Snap.OK() {
		self[v.Addr] = v
	}
	var p problems
	for _, v := range e.Snap.OK() {
		if v.ShardsErr != nil {
			p.add("%s: CLUSTER SHARDS: %v", v.Addr, v.ShardsErr)
			continue
		}
		for _, sh := range v.Shards {
			for _, n := range sh.Nodes {
				if n.Health == "online" {
					continue
				}
				addr := fmt.Sprintf("%s:%d", n.IP, cmp.Or(n.Port, n.TLSPort)) // TLS-only nodes report tls-port alone
				if n.Health == "loading" && n.Role == "replica" {
					if sv, ok := self[addr]; ok && sv.Repl["master_link_status"] == "up" && sv.Repl["master_sync_in_progress"] != "1" {
						continue
					}
				}
				p.add("%s says %s (%s) is %s", v.Addr, addr, n.Role, n.Health)
			}
		}
	}
	return p.err()
}
