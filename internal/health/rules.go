package health

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/rcluster/rcluster/internal/topology"
)

// localRules[c] judges answers[i] by criterion c (Answered through Extra);
// Assess calls them only for nodes that answered, except Answered.
var localRules = [Extra + 1]func(j *judging, i int) []Finding{
	Answered:     answered,
	State:        state,
	KnownNodes:   knownNodes,
	Flags:        flags,
	OpenSlots:    openSlots,
	BusLinks:     busLinks,
	ViewCoverage: viewCoverage,
	ReplicaLink:  replicaLink,
	Role:         role,
	Extra:        extra,
}

// crossRules[c-Extra-1] judges the answers together by criterion c.
var crossRules = [numCriteria - Extra - 1]func(j *judging) []Finding{
	KnowsAll - Extra - 1:      knowsAll,
	SlotAgreement - Extra - 1: slotAgreement,
	RoleAgreement - Extra - 1: roleAgreement,
	SlotsServed - Extra - 1:   slotsServed,
	Epochs - Extra - 1:        epochs,
}

// field is a finding whose reason is a field or a noun phrase: it reads
// "addr: reason".
func field(addr string, c Criterion, reason string) Finding {
	return Finding{Addr: addr, Criterion: c, Reason: reason}
}

// verb is a finding whose reason is a verb phrase: it reads "addr reason".
func verb(addr string, c Criterion, peer, reason string) Finding {
	return Finding{Addr: addr, Criterion: c, Peer: peer, Reason: reason, sentence: addr + " " + reason}
}

func answered(j *judging, i int) []Finding {
	a := j.answers[i]
	if a.Err == nil {
		return nil
	}
	return []Finding{field(a.Addr, Answered, "no answer: "+a.Err.Error())}
}

func state(j *judging, i int) []Finding {
	a := j.answers[i]
	if s := a.Info["cluster_state"]; s != "ok" {
		return []Finding{field(a.Addr, State, "cluster_state:"+s)}
	}
	return nil
}

func knownNodes(j *judging, i int) []Finding {
	a := j.answers[i]
	if j.expect <= 0 {
		return nil
	}
	if k := a.Info["cluster_known_nodes"]; k != strconv.Itoa(j.expect) {
		return []Finding{field(a.Addr, KnownNodes, fmt.Sprintf("cluster_known_nodes:%s (want %d)", k, j.expect))}
	}
	return nil
}

// flags: a peer flagged fail or fail? is (maybe) down; handshake and noaddr
// mean the node does not fully know it yet.
func flags(j *judging, i int) []Finding {
	a := j.answers[i]
	var out []Finding
	for _, n := range a.Nodes {
		if t := n.Trouble(); t != "" {
			peer := j.name(n.ID)
			out = append(out, verb(a.Addr, Flags, peer, "sees "+peer+" as "+t))
		}
	}
	return out
}

// openSlots looks at the node's own line: Redis shows migrating and
// importing slots only there.
func openSlots(j *judging, i int) []Finding {
	a, me := j.answers[i], j.me[i]
	var out []Finding
	for _, s := range sortedSlots(me.Migrating) {
		peer := j.name(me.Migrating[s])
		f := verb(a.Addr, OpenSlots, peer, fmt.Sprintf("has slot %d migrating to %s", s, peer))
		f.Slots = []topology.SlotRange{{Start: s, End: s}}
		out = append(out, f)
	}
	for _, s := range sortedSlots(me.Importing) {
		peer := j.name(me.Importing[s])
		f := verb(a.Addr, OpenSlots, peer, fmt.Sprintf("has slot %d importing from %s", s, peer))
		f.Slots = []topology.SlotRange{{Start: s, End: s}}
		out = append(out, f)
	}
	return out
}

func sortedSlots(m map[int]string) []int {
	out := make([]int, 0, len(m))
	for s := range m {
		out = append(out, s)
	}
	sort.Ints(out)
	return out
}

// busLinks: a peer already flagged (Flags) is not reported twice.
func busLinks(j *judging, i int) []Finding {
	a := j.answers[i]
	var out []Finding
	for _, n := range a.Nodes {
		if !n.Connected && !n.IsMyself() && n.Trouble() == "" {
			peer := j.name(n.ID)
			out = append(out, verb(a.Addr, BusLinks, peer, "has no bus link to "+peer))
		}
	}
	return out
}

func viewCoverage(j *judging, i int) []Finding {
	a := j.answers[i]
	gaps := topology.Uncovered(a.Nodes)
	if len(gaps) == 0 {
		return nil
	}
	f := verb(a.Addr, ViewCoverage, "", fmt.Sprintf("has %d slots unassigned in its view (%s)",
		topology.CountSlots(gaps), short(topology.FormatRanges(gaps))))
	f.Slots = gaps
	return []Finding{f}
}

func replicaLink(j *judging, i int) []Finding {
	a := j.answers[i]
	if a.Repl["role"] != "slave" {
		return nil
	}
	st := a.Repl["master_link_status"]
	if st == "up" {
		return nil
	}
	f := field(a.Addr, ReplicaLink, "master_link_status:"+st)
	if h := a.Repl["master_host"]; h != "" {
		f.Peer = net.JoinHostPort(h, a.Repl["master_port"])
		f.Reason += " (master " + f.Peer + ")"
	}
	return []Finding{f}
}

func role(j *judging, i int) []Finding {
	a, me := j.answers[i], j.me[i]
	switch {
	case !me.IsMyself():
		return []Finding{field(a.Addr, Role, "CLUSTER NODES has no myself line")}
	case (a.Repl["role"] == "slave") != me.IsReplica():
		return []Finding{field(a.Addr, Role, fmt.Sprintf("INFO says role:%s but CLUSTER NODES says %s",
			a.Repl["role"], strings.Join(me.Flags, ",")))}
	}
	return nil
}

func extra(j *judging, i int) []Finding {
	a := j.answers[i]
	out := make([]Finding, 0, len(a.Extra))
	for _, x := range a.Extra {
		out = append(out, field(a.Addr, Extra, x))
	}
	return out
}

// knowsAll: every node that any view holds (except handshakes, whose ids
// are random) must be in every view. A node that does not answer and that
// no view holds is not missed here: Answered and KnownNodes name it.
func knowsAll(j *judging) []Finding {
	union := map[string]bool{}
	for _, a := range j.answers {
		if a.Err != nil {
			continue
		}
		for _, n := range a.Nodes {
			if !n.HasFlag("handshake") {
				union[n.ID] = true
			}
		}
	}
	var out []Finding
	for _, a := range j.answers {
		if a.Err != nil {
			continue
		}
		has := make(map[string]bool, len(a.Nodes))
		for _, n := range a.Nodes {
			has[n.ID] = true
		}
		var missing []string
		for id := range union {
			if !has[id] {
				missing = append(missing, j.name(id))
			}
		}
		if len(missing) == 0 {
			continue
		}
		sort.Strings(missing)
		peer := strings.Join(missing, ", ")
		if len(missing) > 10 {
			peer = strings.Join(missing[:10], ", ") + fmt.Sprintf(" and %d more", len(missing)-10)
		}
		out = append(out, verb(a.Addr, KnowsAll, peer, "does not know "+peer))
	}
	return out
}

// slotAgreement names, for each view that differs from the majority's,
// how many slots differ and the first range in which they do.
func slotAgreement(j *judging) []Finding {
	ref := j.slotRef
	if ref.first < 0 {
		return nil
	}
	var ma *topology.SlotMap
	voters := j.voters()
	refAddr := j.answers[ref.first].Addr
	var out []Finding
	for i, a := range j.answers {
		if a.Err != nil || j.slotSig[i] == ref.sig {
			continue
		}
		if ma == nil {
			ma = topology.SlotOwners(j.answers[ref.first].Nodes)
		}
		mb := topology.SlotOwners(a.Nodes)
		diff := slotDiff(ma, mb)
		r := diff[0]
		reason := fmt.Sprintf("disagrees on %d slots with the view of %s (%d of %d nodes share it): it says %s belongs to %s, the others say %s",
			topology.CountSlots(diff), refAddr, ref.count, voters,
			topology.FormatRanges(diff[:1]), j.owner(mb[r.Start]), j.owner(ma[r.Start]))
		switch len(diff) {
		case 1:
		case 2:
			reason += fmt.Sprintf("; 1 more range differs (%s)", topology.FormatRanges(diff[1:]))
		default:
			reason += fmt.Sprintf("; %d more ranges differ (%s)", len(diff)-1, short(topology.FormatRanges(diff[1:])))
		}
		f := verb(a.Addr, SlotAgreement, refAddr, reason)
		f.Slots = diff
		out = append(out, f)
	}
	return out
}

func (j *judging) owner(id string) string {
	if id == "" {
		return "no owner"
	}
	return j.name(id)
}

// slotDiff returns the ranges where b's owners differ from a's, split
// wherever either view's owner changes.
func slotDiff(a, b *topology.SlotMap) []topology.SlotRange {
	var diff []topology.SlotRange
	for s := 0; s < topology.SlotCount; s++ {
		if a[s] == b[s] {
			continue
		}
		if k := len(diff); k > 0 && diff[k-1].End == s-1 && a[s-1] == a[s] && b[s-1] == b[s] {
			diff[k-1].End = s
		} else {
			diff = append(diff, topology.SlotRange{Start: s, End: s})
		}
	}
	return diff
}

// roleAgreement names, for each view whose membership or roles differ from
// the majority's, how (at most three differences, then a count).
func roleAgreement(j *judging) []Finding {
	ref := j.roleRef
	if ref.first < 0 {
		return nil
	}
	voters := j.voters()
	refAddr := j.answers[ref.first].Addr
	var out []Finding
	for i, a := range j.answers {
		if a.Err != nil || j.roleSig[i] == ref.sig {
			continue
		}
		f := field(a.Addr, RoleAgreement, fmt.Sprintf("roles differ from the view of %s (%d of %d nodes share it): %s",
			refAddr, ref.count, voters, j.roleDiff(j.answers[ref.first].Nodes, a.Nodes)))
		f.Peer = refAddr
		out = append(out, f)
	}
	return out
}

// roleDiff describes how view b's membership and roles differ from view a's.
func (j *judging) roleDiff(a, b []topology.Node) string {
	role := func(ns []topology.Node) map[string]string {
		m := make(map[string]string, len(ns))
		for _, n := range ns {
			switch {
			case n.IsReplica():
				m[n.ID] = "replica of " + j.name(n.MasterID)
			case n.IsMaster():
				m[n.ID] = "master"
			default:
				m[n.ID] = strings.Join(n.Flags, ",")
			}
		}
		return m
	}
	ra, rb := role(a), role(b)
	var d []string
	for _, n := range b {
		x, ok := ra[n.ID]
		switch {
		case !ok && n.IsMyself():
			d = append(d, "itself ("+j.name(n.ID)+") is unknown to the other view")
		case !ok:
			d = append(d, "knows "+j.name(n.ID)+" which the other view does not")
		case x != rb[n.ID]:
			d = append(d, fmt.Sprintf("sees %s as %s, not %s", j.name(n.ID), rb[n.ID], x))
		}
	}
	for _, n := range a {
		if _, ok := rb[n.ID]; !ok {
			d = append(d, "does not know "+j.name(n.ID))
		}
	}
	sort.Strings(d)
	if len(d) > 3 {
		d = append(d[:3], fmt.Sprintf("and %d more", len(d)-3))
	}
	return strings.Join(d, ", ")
}

// slotsServed: every slot the majority view assigns must be claimed, in its
// own view, by a master that answers (as redis-cli --cluster check counts
// coverage). Slots the majority leaves unassigned are ViewCoverage's. The
// finding names the owner the majority view gives.
func slotsServed(j *judging) []Finding {
	ref := j.slotRef
	if ref.first < 0 {
		return nil
	}
	var claimed [topology.SlotCount]bool
	answering := map[string]bool{}
	for i, me := range j.me {
		if j.answers[i].Err != nil || me.ID == "" {
			continue
		}
		answering[me.ID] = true
		if !me.IsMaster() {
			continue
		}
		for _, r := range me.Slots {
			for s := max(r.Start, 0); s <= r.End && s < topology.SlotCount; s++ {
				claimed[s] = true
			}
		}
	}
	type unserved struct {
		id     string
		ranges []topology.SlotRange
	}
	var owners []unserved
	for _, n := range j.answers[ref.first].Nodes {
		var rs []topology.SlotRange
		for _, r := range topology.MergeRanges(n.Slots) {
			for s := max(r.Start, 0); s <= r.End && s < topology.SlotCount; s++ {
				if claimed[s] {
					continue
				}
				if k := len(rs); k > 0 && rs[k-1].End == s-1 {
					rs[k-1].End = s
				} else {
					rs = append(rs, topology.SlotRange{Start: s, End: s})
				}
			}
		}
		if len(rs) > 0 {
			owners = append(owners, unserved{n.ID, rs})
		}
	}
	sort.Slice(owners, func(x, y int) bool { return owners[x].ranges[0].Start < owners[y].ranges[0].Start })
	out := make([]Finding, 0, len(owners))
	for _, o := range owners {
		addr, rs := j.name(o.id), short(topology.FormatRanges(o.ranges))
		f := Finding{Addr: addr, Criterion: SlotsServed, Slots: o.ranges}
		if answering[o.id] {
			f.Reason = fmt.Sprintf("does not claim slots %s, though the others say it owns them", rs)
			f.sentence = fmt.Sprintf("slots %s are not served: %s does not claim them, though others think it does", rs, addr)
		} else {
			f.Reason = fmt.Sprintf("its slots %s are not served: no answer from it", rs)
			f.sentence = fmt.Sprintf("slots %s are owned by %s, which does not answer", rs, addr)
		}
		out = append(out, f)
	}
	return out
}

// epochs: each slot-owning master's own config epoch must be unique: it is
// what orders two claims to the same slot. (Redis resolves a collision by
// bumping one of them; until it has, the cluster is not settled.)
func epochs(j *judging) []Finding {
	seen := map[uint64]string{}
	var out []Finding
	for i, me := range j.me {
		a := j.answers[i]
		if a.Err != nil || !me.IsMaster() || len(me.Slots) == 0 {
			continue
		}
		other, dup := seen[me.Epoch]
		if !dup {
			seen[me.Epoch] = a.Addr
			continue
		}
		out = append(out, Finding{Addr: a.Addr, Criterion: Epochs, Peer: other,
			Reason:   fmt.Sprintf("shares config epoch %d with %s", me.Epoch, other),
			sentence: fmt.Sprintf("%s and %s share config epoch %d", other, a.Addr, me.Epoch)})
	}
	return out
}
