package health

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rcluster/rcluster/internal/topology"
)

// The captures in internal/topology/testdata come from one real 6-node
// cluster (redis-server 7.0.15, made by redis-cli, replicas 1): 12001-12003
// masters, 12004-12006 replicas of 12002, 12003, 12001.
func capture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "topology", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func nodesOf(t *testing.T, name string) []topology.Node {
	t.Helper()
	ns, err := topology.ParseNodes(capture(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

const (
	a1, a2, a3 = "127.0.0.1:12001", "127.0.0.1:12002", "127.0.0.1:12003"
	a4, a5, a6 = "127.0.0.1:12004", "127.0.0.1:12005", "127.0.0.1:12006"
)

var addrs = []string{a1, a2, a3, a4, a5, a6}

// healthy6 is the captured cluster as every node answered: 12001's and
// 12004's views are the captured ones, the others 12001's view with the
// myself flag moved to them.
func healthy6(t *testing.T) []Answer {
	t.Helper()
	master := nodesOf(t, "cluster-nodes-6-master-view.txt")
	replicaRepl := topology.ParseInfo(capture(t, "info-replication-replica.txt"))
	var out []Answer
	for _, addr := range addrs {
		a := Answer{Addr: addr, Info: topology.ParseInfo(capture(t, "cluster-info-ok.txt"))}
		switch addr {
		case a1:
			a.Nodes = master
		case a4:
			a.Nodes = nodesOf(t, "cluster-nodes-6-replica-view.txt")
		default:
			a.Nodes = moveMyself(master, addr)
		}
		me, ok := topology.Myself(a.Nodes)
		if !ok {
			t.Fatalf("%s: no myself line", addr)
		}
		if me.IsReplica() {
			a.Repl = map[string]string{}
			for k, v := range replicaRepl {
				a.Repl[k] = v
			}
			m, _ := topology.FindNode(a.Nodes, me.MasterID)
			a.Repl["master_port"] = strings.TrimPrefix(m.Addr, "127.0.0.1:")
		} else {
			a.Repl = map[string]string{"role": "master", "connected_slaves": "1"}
		}
		out = append(out, a)
	}
	return out
}

// moveMyself copies a view and makes addr's line the myself one.
func moveMyself(view []topology.Node, addr string) []topology.Node {
	out := make([]topology.Node, len(view))
	for i, n := range view {
		n.Flags = slices.DeleteFunc(slices.Clone(n.Flags), func(f string) bool { return f == "myself" })
		if n.Addr == addr {
			n.Flags = append([]string{"myself"}, n.Flags...)
		}
		out[i] = n
	}
	return out
}

// line returns a pointer to the line for addr in one answer's view.
func line(t *testing.T, a *Answer, addr string) *topology.Node {
	t.Helper()
	for i := range a.Nodes {
		if a.Nodes[i].Addr == addr {
			return &a.Nodes[i]
		}
	}
	t.Fatalf("%s's view has no %s", a.Addr, addr)
	return nil
}

func strs[T interface{ String() string }](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.String()
	}
	return out
}

func TestHealthyCapturedCluster(t *testing.T) {
	as := healthy6(t)
	if p := Judge(as, 6); p != nil {
		t.Fatalf("Judge = %q", strs(p))
	}
	for _, c := range Criteria() {
		if f := Assess(as, 6, c); f != nil {
			t.Errorf("%s: %q", c, strs(f))
		}
	}
	for _, a := range as {
		if f := Local(a, 6); f != nil {
			t.Errorf("Local(%s) = %q", a.Addr, strs(f))
		}
	}
	// Without an expected count the count is not judged.
	if p := Judge(as, 0); p != nil {
		t.Fatalf("Judge(expect 0) = %q", strs(p))
	}
}

// TestJudge breaks the healthy cluster one way at a time: Judge must name
// exactly the node at fault and say why, and nothing else.
func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		name   string
		expect int
		mutate func(t *testing.T, as []Answer) []Answer
		want   []string // Problem.String()s
	}{
		{"a master does not answer", 6, func(t *testing.T, as []Answer) []Answer {
			as[1] = Answer{Addr: a2, Err: errors.New("i/o timeout")}
			return as
		}, []string{a2 + ": no answer: i/o timeout; its slots 5461-10922 are not served: no answer from it"}},

		{"cluster_state fail", 6, func(t *testing.T, as []Answer) []Answer {
			as[2].Info["cluster_state"] = "fail"
			return as
		}, []string{a3 + ": cluster_state:fail"}},

		{"one node more expected", 7, func(t *testing.T, as []Answer) []Answer { return as }, func() []string {
			var w []string
			for _, a := range addrs {
				w = append(w, a+": cluster_known_nodes:6 (want 7)")
			}
			return w
		}()},

		{"captured pfail view", 6, func(t *testing.T, as []Answer) []Answer {
			as[0].Nodes = nodesOf(t, "cluster-nodes-pfail-or-fail.txt")
			return as
		}, []string{a1 + ": sees " + a4 + " as fail?"}},

		{"captured fail view", 6, func(t *testing.T, as []Answer) []Answer {
			as[0].Nodes = nodesOf(t, "cluster-nodes-fail.txt")
			return as
		}, []string{a1 + ": sees " + a4 + " as fail"}},

		{"captured migrating and importing slot", 6, func(t *testing.T, as []Answer) []Answer {
			as[0].Nodes = nodesOf(t, "cluster-nodes-migrating.txt")
			as[1].Nodes = nodesOf(t, "cluster-nodes-importing.txt")
			return as
		}, []string{a1 + ": has slot 100 migrating to " + a2, a2 + ": has slot 100 importing from " + a1}},

		{"a bus link down", 6, func(t *testing.T, as []Answer) []Answer {
			line(t, &as[2], a5).Connected = false
			return as
		}, []string{a3 + ": has no bus link to " + a5}},

		{"a replica link down", 6, func(t *testing.T, as []Answer) []Answer {
			as[3].Repl["master_link_status"] = "down"
			return as
		}, []string{a4 + ": master_link_status:down (master " + a2 + ")"}},

		{"INFO and CLUSTER NODES disagree on the role", 6, func(t *testing.T, as []Answer) []Answer {
			as[0].Repl = map[string]string{"role": "slave", "master_link_status": "up"}
			return as
		}, []string{a1 + ": INFO says role:slave but CLUSTER NODES says myself,master"}},

		{"no myself line", 6, func(t *testing.T, as []Answer) []Answer {
			as[4].Nodes = moveMyself(as[4].Nodes, "nobody")
			return as
		}, []string{a5 + ": CLUSTER NODES has no myself line"}},

		{"a view disagrees on slots", 6, func(t *testing.T, as []Answer) []Answer {
			line(t, &as[5], a2).Slots = []topology.SlotRange{{Start: 5461, End: 11000}}
			line(t, &as[5], a3).Slots = []topology.SlotRange{{Start: 11001, End: 16383}}
			return as
		}, []string{a6 + ": disagrees on 78 slots with the view of " + a1 + " (5 of 6 nodes share it): it says 10923-11000 belongs to " +
			a2 + ", the others say " + a3}},

		{"a view swaps slots between two masters", 6, func(t *testing.T, as []Answer) []Answer {
			line(t, &as[5], a1).Slots = []topology.SlotRange{{Start: 0, End: 4999}, {Start: 5461, End: 5600}}
			line(t, &as[5], a2).Slots = []topology.SlotRange{{Start: 5000, End: 5460}, {Start: 5601, End: 10922}}
			return as
		}, []string{a6 + ": disagrees on 601 slots with the view of " + a1 + " (5 of 6 nodes share it): it says 5000-5460 belongs to " +
			a2 + ", the others say " + a1 + "; 1 more range differs (5461-5600)"}},

		{"a view disagrees on a replica's master", 6, func(t *testing.T, as []Answer) []Answer {
			line(t, &as[4], a6).MasterID = line(t, &as[4], a2).ID
			return as
		}, []string{a5 + ": roles differ from the view of " + a1 + " (5 of 6 nodes share it): sees " + a6 +
			" as replica of " + a2 + ", not replica of " + a1}},

		{"a master drops slots it owns", 6, func(t *testing.T, as []Answer) []Answer {
			line(t, &as[2], a3).Slots = []topology.SlotRange{{Start: 11000, End: 16383}}
			return as
		}, []string{a3 + ": has 77 slots unassigned in its view (10923-10999); " +
			"disagrees on 77 slots with the view of " + a1 + " (5 of 6 nodes share it): it says 10923-10999 belongs to no owner, the others say " + a3 + "; " +
			"does not claim slots 10923-10999, though the others say it owns them"}},

		{"two masters share a config epoch", 6, func(t *testing.T, as []Answer) []Answer {
			line(t, &as[1], a2).Epoch = 1
			return as
		}, []string{a2 + ": shares config epoch 1 with " + a1}},

		{"a handshake in progress", 6, func(t *testing.T, as []Answer) []Answer {
			as[0].Nodes = append(as[0].Nodes, topology.Node{ID: "0123456789abcdef0123456789abcdef01234567",
				Addr: "127.0.0.1:12007", Flags: []string{"handshake"}})
			return as
		}, []string{a1 + ": sees 127.0.0.1:12007 as handshake; roles differ from the view of " + a2 +
			" (5 of 6 nodes share it): knows 127.0.0.1:12007 which the other view does not"}},

		{"a node nobody has an address for", 6, func(t *testing.T, as []Answer) []Answer {
			as[3].Nodes = append(as[3].Nodes, topology.Node{ID: "abcdef0123456789abcdef0123456789abcdef01",
				Addr: ":0", Flags: []string{"noaddr", "master"}})
			return as
		}, []string{
			a1 + ": does not know node abcdef01", a2 + ": does not know node abcdef01", a3 + ": does not know node abcdef01",
			a4 + ": sees node abcdef01 as noaddr; roles differ from the view of " + a1 + " (5 of 6 nodes share it): knows node abcdef01 which the other view does not",
			a5 + ": does not know node abcdef01", a6 + ": does not know node abcdef01",
		}},

		{"the caller's probe failed", 6, func(t *testing.T, as []Answer) []Answer {
			as[0].Extra = []string{"EXISTS rcluster:1 (slot 0): CLUSTERDOWN The cluster is down"}
			return as
		}, []string{a1 + ": EXISTS rcluster:1 (slot 0): CLUSTERDOWN The cluster is down"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strs(Judge(tc.mutate(t, healthy6(t)), tc.expect))
			if !slices.Equal(got, tc.want) {
				t.Errorf("Judge =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// A captured fresh node next to the cluster: it knows only itself and the
// others do not know it; each side says so, naming the other by address.
func TestJudgeFreshNodeBesideCluster(t *testing.T) {
	as := healthy6(t)
	fresh := nodesOf(t, "cluster-nodes-fresh.txt")
	fresh[0].ID = strings.Repeat("f", 40) // the capture reused 12001's id
	const a7 = "127.0.0.1:12007"
	as = append(as, Answer{Addr: a7, Nodes: fresh, Info: topology.ParseInfo(capture(t, "cluster-info-fresh.txt")),
		Repl: map[string]string{"role": "master"}})
	ps := Judge(as, 7)
	if len(ps) != 7 {
		t.Fatalf("Judge = %q, want all 7 nodes", strs(ps))
	}
	for _, p := range ps[:6] {
		if want := p.Addr + ": cluster_known_nodes:6 (want 7); does not know " + a7; p.String() != want {
			t.Errorf("got  %s\nwant %s", p, want)
		}
	}
	got := ps[6].String()
	for _, want := range []string{a7 + ": cluster_state:fail; cluster_known_nodes:1 (want 7); has 16384 slots unassigned in its view (0-16383)",
		"does not know " + strings.Join(addrs, ", "), "disagrees on 16384 slots with the view of " + a1 + " (6 of 7 nodes share it)",
		"roles differ from the view of " + a1} {
		if !strings.Contains(got, want) {
			t.Errorf("%s\nlacks %q", got, want)
		}
	}
}

// The 100-node capture is one view of a healthy cluster: its own answer
// passes (and fails a count that does not match it); judged alone, the
// other 49 masters' slots are not served as far as the answers show.
func TestJudgeHundredNodeView(t *testing.T) {
	ns := nodesOf(t, "cluster-nodes-100.txt")
	me, _ := topology.Myself(ns)
	a := Answer{Addr: me.Addr, Nodes: ns, Info: map[string]string{"cluster_state": "ok", "cluster_known_nodes": "100"},
		Repl: map[string]string{"role": "master"}}
	if f := Local(a, 100); f != nil {
		t.Fatalf("Local = %q", strs(f))
	}
	if f := strs(Local(a, 101)); len(f) != 1 || f[0] != me.Addr+": cluster_known_nodes:100 (want 101)" {
		t.Fatalf("Local(expect 101) = %q", f)
	}
	ps := Judge([]Answer{a}, 100)
	if len(ps) != 49 || ps[0].String() != "127.0.0.1:19464: its slots 328-654 are not served: no answer from it" {
		t.Fatalf("Judge of one view = %d problems: %q", len(ps), strs(ps))
	}
	for _, p := range ps {
		if p.Addr == me.Addr {
			t.Errorf("the answering node is at fault: %s", p)
		}
	}
}

// Findings read as sentences naming the node; Local sees only what one
// answer shows; MajoritySlots is the reference of the agreement check.
func TestFindingsLocalAndMajority(t *testing.T) {
	as := healthy6(t)
	as[0].Nodes = nodesOf(t, "cluster-nodes-pfail-or-fail.txt")
	as[2].Info["cluster_state"] = "fail"
	line(t, &as[2], a3).Slots = []topology.SlotRange{{Start: 11000, End: 16383}}
	as[4] = Answer{Addr: a5, Err: errors.New("connection refused")}
	got := strs(Assess(as, 6, Flags, State, Answered, SlotsServed))
	want := []string{ // criterion by criterion, in the order of the constants
		a5 + ": no answer: connection refused",
		a3 + ": cluster_state:fail",
		a1 + " sees " + a4 + " as fail?",
		"slots 10923-10999 are not served: " + a3 + " does not claim them, though others think it does",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Assess =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	f := Assess(as, 6, Flags)[0]
	if f.Addr != a1 || f.Peer != a4 || f.Criterion != Flags {
		t.Errorf("finding %+v: want Addr %s Peer %s", f, a1, a4)
	}
	// 12003's own answer shows its state and its gap, not the slots
	// the others say it owns.
	if got := strs(Local(as[2], 6)); !slices.Equal(got, []string{a3 + ": cluster_state:fail", a3 + " has 77 slots unassigned in its view (10923-10999)"}) {
		t.Errorf("Local = %q", got)
	}
	ref := MajoritySlots(as)
	if ref[10923] != line(t, &as[1], a3).ID || ref[0] != line(t, &as[1], a1).ID {
		t.Errorf("MajoritySlots: slot 10923 -> %q, slot 0 -> %q", ref[10923], ref[0])
	}
	if ref := MajoritySlots([]Answer{{Addr: a1, Err: errors.New("down")}}); ref.Covered() != 0 {
		t.Errorf("MajoritySlots with no answer covers %d slots", ref.Covered())
	}
}

// Only masters that own slots need distinct config epochs: replicas carry
// their master's, and empty masters may share one.
func TestEpochsOfSlotOwnersOnly(t *testing.T) {
	as := healthy6(t)
	for _, addr := range []string{"127.0.0.1:12007", "127.0.0.1:12008"} {
		view := moveMyself(append(slices.Clone(as[0].Nodes), topology.Node{ID: strings.Repeat(addr[len(addr)-1:], 40),
			Addr: addr, Flags: []string{"master"}, Epoch: 1, Connected: true}), addr)
		as = append(as, Answer{Addr: addr, Nodes: view})
	}
	if f := Assess(as, 0, Epochs); f != nil {
		t.Errorf("Epochs = %q", strs(f))
	}
}

func TestCriteriaAreNamed(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Criteria() {
		n := c.String()
		if n == "" || n == "unknown criterion" || seen[n] {
			t.Errorf("criterion %d: name %q", c, n)
		}
		seen[n] = true
	}
	if len(seen) != int(numCriteria) {
		t.Errorf("%d criteria named, want %d", len(seen), numCriteria)
	}
}

// BenchmarkJudge100 judges the 100-node capture as all 100 nodes would
// answer it (one readiness round of a 100-node up).
func BenchmarkJudge100(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("..", "topology", "testdata", "cluster-nodes-100.txt"))
	if err != nil {
		b.Fatal(err)
	}
	view, err := topology.ParseNodes(string(raw))
	if err != nil {
		b.Fatal(err)
	}
	as := make([]Answer, len(view))
	for i, n := range view {
		role := "master"
		if n.IsReplica() {
			role = "slave"
		}
		as[i] = Answer{Addr: n.Addr, Nodes: moveMyself(view, n.Addr),
			Info: map[string]string{"cluster_state": "ok", "cluster_known_nodes": "100"},
			Repl: map[string]string{"role": role, "master_link_status": "up"}}
	}
	if p := Judge(as, 100); p != nil {
		b.Fatalf("Judge = %q", strs(p))
	}
	b.ReportAllocs()
	for b.Loop() {
		Judge(as, 100)
	}
}

func TestWithoutDown(t *testing.T) {
	fs := []Finding{
		{Addr: "a", Criterion: Flags, Peer: "d", Reason: "sees d as fail"},
		{Addr: "a", Criterion: BusLinks, Peer: "d", Reason: "has no bus link to d"},
		{Addr: "a", Criterion: Flags, Peer: "e", Reason: "sees e as fail"},
		{Addr: "a", Criterion: State, Reason: "cluster_state:fail"},
	}
	got := WithoutDown(fs, func(a string) bool { return a == "d" })
	if len(got) != 2 || got[0].Peer != "e" || got[1].Criterion != State {
		t.Fatalf("WithoutDown = %+v, want the finding about e and the state", got)
	}
	if len(fs) != 4 || fs[0].Peer != "d" {
		t.Fatalf("WithoutDown changed its input: %+v", fs)
	}
}
