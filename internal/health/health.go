// Package health is rcluster's one definition of a healthy Redis Cluster.
// From what each node answered (CLUSTER INFO, CLUSTER NODES, INFO
// replication, or the error it gave) it judges the cluster by a fixed set of
// criteria and names the node, and where relevant the peer or slots, at
// fault. up's readiness (slots), status (cluster) and verify's topology
// checks all judge through it, so they cannot disagree. It is pure: callers
// do the I/O.
package health

import (
	"strings"

	"github.com/rcluster/rcluster/internal/topology"
)

// Answer is what one node said, or the error it gave instead.
type Answer struct {
	Addr  string
	Err   error             // no (usable) answer: the other fields are not judged
	Info  map[string]string // CLUSTER INFO
	Repl  map[string]string // INFO replication (role, master_link_status, master_host, master_port)
	Nodes []topology.Node   // CLUSTER NODES
	// Extra are problems the caller's own probes found on this node (slots:
	// a master that looks ready must also serve a read in its own slots).
	// They count like any other reason, as the Extra criterion.
	Extra []string
}

// Criterion is one rule of the definition.
type Criterion int

// The criteria, in the order Judge reports a node's reasons. The first
// group needs only the node's own answer (Local); the rest compare the
// answers.
const (
	Answered      Criterion = iota // the node answered
	State                          // cluster_state:ok
	KnownNodes                     // cluster_known_nodes is the expected count (when one is given)
	Flags                          // it sees no node as fail, fail?, handshake or noaddr
	OpenSlots                      // no slot of its own is migrating or importing
	BusLinks                       // its bus link to every peer is connected
	ViewCoverage                   // its view assigns all 16384 slots
	ReplicaLink                    // a replica's master_link_status is up
	Role                           // INFO's role agrees with its CLUSTER NODES myself line
	Extra                          // the caller's own probes (Answer.Extra) found nothing
	KnowsAll                       // its view holds every node any view holds (handshakes aside)
	SlotAgreement                  // its slot map is the one most nodes answered with
	RoleAgreement                  // its roles and membership are the ones most nodes answered with
	SlotsServed                    // every assigned slot is claimed by its owner, which answers
	Epochs                         // no two slot-owning masters share a config epoch
	numCriteria
)

var criterionNames = [numCriteria]string{
	"answered", "cluster_state ok", "known node count", "no failing nodes", "no open slots",
	"bus links up", "slots assigned in every view", "replica link up", "role agrees with INFO",
	"probes pass", "knows every node", "slot map agrees", "roles agree", "slots served",
	"config epochs unique",
}

func (c Criterion) String() string {
	if c < 0 || c >= numCriteria {
		return "unknown criterion"
	}
	return criterionNames[c]
}

// Criteria returns every criterion, in order.
func Criteria() []Criterion {
	out := make([]Criterion, numCriteria)
	for i := range out {
		out[i] = Criterion(i)
	}
	return out
}

// local reports whether a criterion needs only the node's own answer.
func (c Criterion) local() bool { return c <= Extra }

// Finding is one criterion failed by one node.
type Finding struct {
	// Addr names the node at fault: the one whose answer shows the
	// problem, or (SlotsServed) the owner of the slots not served.
	Addr      string
	Criterion Criterion
	// Peer names the other node involved, if any: the one seen failing or
	// unlinked or not known, the target or source of an open slot, the
	// view disagreed with, the master sharing a config epoch.
	Peer string
	// Slots are the slots involved, if any.
	Slots []topology.SlotRange
	// Reason says what is wrong, phrased to follow "Addr: ".
	Reason string
	// sentence is the finding as one sentence ("A sees B as fail?"), when
	// "Addr: Reason" reads badly; String falls back to that.
	sentence string
}

// String is the finding as one line naming the node: "A sees B as fail?",
// "A: cluster_state:fail".
func (f Finding) String() string {
	if f.sentence != "" {
		return f.sentence
	}
	return f.Addr + ": " + f.Reason
}

// Problem is every reason one node keeps the cluster from being healthy.
type Problem struct {
	Addr    string
	Reasons []string
}

// String is "addr: reason1; reason2".
func (p Problem) String() string { return p.Addr + ": " + strings.Join(p.Reasons, "; ") }

// Judge applies every criterion and returns one Problem per node at fault,
// in answers order (then nodes that did not answer but own unserved slots);
// nil means healthy. expectNodes is the number of nodes the cluster should
// have (0: not checked).
func Judge(answers []Answer, expectNodes int) []Problem {
	fs := Assess(answers, expectNodes)
	if len(fs) == 0 {
		return nil
	}
	at := map[string]int{}
	var out []Problem
	for _, a := range answers {
		if _, ok := at[a.Addr]; !ok {
			at[a.Addr] = len(out)
			out = append(out, Problem{Addr: a.Addr})
		}
	}
	// Assess lists findings criterion by criterion; a node's reasons keep
	// that order.
	for _, f := range fs {
		i, ok := at[f.Addr]
		if !ok {
			i = len(out)
			at[f.Addr] = i
			out = append(out, Problem{Addr: f.Addr})
		}
		out[i].Reasons = append(out[i].Reasons, f.Reason)
	}
	kept := out[:0]
	for _, p := range out {
		if len(p.Reasons) > 0 {
			kept = append(kept, p)
		}
	}
	return kept
}

// WithoutDown drops the findings that only say a node known to be down
// (killed, paused, partitioned: down(addr) true) is seen failing or without
// a bus link: once the down node is accounted for, its peers noticing it
// is no news. Every other finding stays.
func WithoutDown(fs []Finding, down func(addr string) bool) []Finding {
	out := fs[:0:0]
	for _, f := range fs {
		if (f.Criterion == Flags || f.Criterion == BusLinks) && down(f.Peer) {
			continue
		}
		out = append(out, f)
	}
	return out
}

// Assess applies the given criteria (all of them when none is given) and
// returns what failed, criterion by criterion in the order of the
// constants, each in answers order.
func Assess(answers []Answer, expectNodes int, only ...Criterion) []Finding {
	want := [numCriteria]bool{}
	if len(only) == 0 {
		for i := range want {
			want[i] = true
		}
	}
	for _, c := range only {
		if c >= 0 && c < numCriteria {
			want[c] = true
		}
	}
	j := newJudging(answers, expectNodes)
	var out []Finding
	for c := Criterion(0); c < numCriteria; c++ {
		if !want[c] {
			continue
		}
		if c.local() {
			for i := range answers {
				if answers[i].Err == nil || c == Answered {
					out = append(out, localRules[c](j, i)...)
				}
			}
			continue
		}
		out = append(out, crossRules[c-Extra-1](j)...)
	}
	return out
}

// Local applies the criteria that need only this node's answer (Answered
// through Extra): what one node's own answers show.
func Local(a Answer, expectNodes int) []Finding {
	var cs []Criterion
	for c := Criterion(0); c.local(); c++ {
		cs = append(cs, c)
	}
	return Assess([]Answer{a}, expectNodes, cs...)
}

// MajoritySlots is the slot map most answering nodes agree on (ties: the
// first in answers order), the reference SlotAgreement judges by; every
// slot is unassigned when no node answered.
func MajoritySlots(answers []Answer) *topology.SlotMap {
	j := newJudging(answers, 0)
	if j.slotRef.first < 0 {
		return &topology.SlotMap{}
	}
	return topology.SlotOwners(answers[j.slotRef.first].Nodes)
}
