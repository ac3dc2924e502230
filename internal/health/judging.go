package health

import (
	"github.com/rcluster/rcluster/internal/topology"
)

// judging is one set of answers prepared for the criteria: each node's
// myself line, a name for every node id, and the majority views.
type judging struct {
	answers []Answer
	expect  int
	me      []topology.Node // answers[i]'s myself line (zero: none, or no answer)
	names   map[string]string
	slotSig []string
	roleSig []string
	slotRef majorityView
	roleRef majorityView
}

func newJudging(answers []Answer, expect int) *judging {
	j := &judging{
		answers: answers,
		expect:  expect,
		me:      make([]topology.Node, len(answers)),
		names:   map[string]string{},
		slotSig: make([]string, len(answers)),
		roleSig: make([]string, len(answers)),
	}
	// A node is named by the address it was asked at; peers the other
	// views describe, by their announced address.
	for i, a := range answers {
		if a.Err != nil {
			continue
		}
		j.me[i], _ = topology.Myself(a.Nodes)
		if id := j.me[i].ID; id != "" && a.Addr != "" {
			j.names[id] = a.Addr
		}
	}
	for _, a := range answers {
		if a.Err != nil {
			continue
		}
		for _, n := range a.Nodes {
			if _, ok := j.names[n.ID]; !ok && n.IP() != "" {
				j.names[n.ID] = n.Addr
			}
		}
	}
	for i, a := range answers {
		if a.Err == nil {
			j.slotSig[i] = topology.SlotSignature(a.Nodes)
			j.roleSig[i] = topology.RoleSignature(a.Nodes)
		}
	}
	j.slotRef = j.majority(j.slotSig)
	j.roleRef = j.majority(j.roleSig)
	return j
}

// name is how findings refer to node id: its address, else "node " and
// the id's first 8 characters.
func (j *judging) name(id string) string {
	if a, ok := j.names[id]; ok {
		return a
	}
	if len(id) > 8 {
		id = id[:8]
	}
	return "node " + id
}

type majorityView struct {
	sig   string
	count int
	first int // index of the first answer holding it; -1: none answered
}

// majority finds the signature most nodes answered with (ties: the one seen
// first in answers order). Nodes that did not answer do not vote.
func (j *judging) majority(sigs []string) majorityView {
	counts := map[string]int{}
	firsts := map[string]int{}
	for i, a := range j.answers {
		if a.Err != nil {
			continue
		}
		s := sigs[i]
		if _, ok := firsts[s]; !ok {
			firsts[s] = i
		}
		counts[s]++
	}
	best := majorityView{first: -1}
	for s, c := range counts {
		f := firsts[s]
		if c > best.count || (c == best.count && f < best.first) {
			best = majorityView{sig: s, count: c, first: f}
		}
	}
	return best
}

// voters is the number of nodes that answered.
func (j *judging) voters() int {
	n := 0
	for _, a := range j.answers {
		if a.Err == nil {
			n++
		}
	}
	return n
}

func short(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
