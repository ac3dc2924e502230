package events

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/topology"
)

// node is one line of a synthetic CLUSTER NODES.
type node struct {
	id     string
	port   int
	master string // id of its master; "" for a master
	epoch  int
	slots  string
	flags  string // extra flags: "fail?", "fail"
}

// healthy is a 3-master, 3-replica cluster: 7004 replicates 7001, 7005
// 7002, 7006 7003.
func healthy() []node {
	return []node{
		{id: "m1", port: 7001, epoch: 1, slots: "0-5460"},
		{id: "m2", port: 7002, epoch: 2, slots: "5461-10922"},
		{id: "m3", port: 7003, epoch: 3, slots: "10923-16383"},
		{id: "r1", port: 7004, master: "m1", epoch: 1},
		{id: "r2", port: 7005, master: "m2", epoch: 2},
		{id: "r3", port: 7006, master: "m3", epoch: 3},
	}
}

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// viewFrom renders what the node on port self says, given the nodes as it
// sees them.
func viewFrom(t *testing.T, self int, nodes []node) View {
	t.Helper()
	var b strings.Builder
	for _, n := range nodes {
		flags, master := "master", "-"
		if n.master != "" {
			flags, master = "slave", n.master
		}
		if n.port == self {
			flags = "myself," + flags
		}
		if n.flags != "" {
			flags += "," + n.flags
		}
		fmt.Fprintf(&b, "%s %s@%d %s %s 0 0 %d connected %s\n", n.id, addr(n.port), n.port+10000, flags, master, n.epoch, n.slots)
	}
	parsed, err := topology.ParseNodes(b.String())
	if err != nil {
		t.Fatal(err)
	}
	return View{Nodes: parsed}
}

// edit returns a copy of nodes with f applied to the node on port.
func edit(nodes []node, port int, f func(*node)) []node {
	out := append([]node(nil), nodes...)
	for i := range out {
		if out[i].port == port {
			f(&out[i])
		}
	}
	return out
}

func flag(f string) func(*node) { return func(n *node) { n.flags = f } }

var t0 = time.Date(2026, 12, 1, 8, 50, 0, 0, time.UTC)

// snap builds snapshot number i: every port in views answers with its
// view, every port in down does not.
func snap(i int, views map[int]View, down ...int) Snapshot {
	s := Snapshot{Time: t0.Add(time.Duration(i) * time.Second), Views: map[string]View{}}
	for p, v := range views {
		s.Views[addr(p)] = v
	}
	for _, p := range down {
		s.Views[addr(p)] = View{Err: "dial tcp " + addr(p) + ": connect: connection refused"}
	}
	return s
}

// all is every port's view of the same nodes, except those in skip.
func all(t *testing.T, nodes []node, skip ...int) map[int]View {
	m := map[int]View{}
	for _, n := range nodes {
		if !contains(skip, n.port) {
			m[n.port] = viewFrom(t, n.port, nodes)
		}
	}
	return m
}

func contains(list []int, x int) bool {
	for _, y := range list {
		if y == x {
			return true
		}
	}
	return false
}

// brief is an event without its time and message, for comparing.
func brief(e Event) string {
	s := e.Kind + " " + e.Node
	for _, f := range [][2]string{{"peer", e.Peer}, {"from", e.From}, {"to", e.To}, {"slots", e.Slots}} {
		if f[1] != "" {
			s += " " + f[0] + "=" + f[1]
		}
	}
	if e.Epoch != 0 {
		s += fmt.Sprintf(" epoch=%d", e.Epoch)
	}
	return s
}

// run diffs consecutive snapshots and checks each step's events.
func run(t *testing.T, snaps []Snapshot, want [][]string) {
	t.Helper()
	if len(want) != len(snaps)-1 {
		t.Fatalf("bad test: %d snapshots, %d steps", len(snaps), len(want))
	}
	for i := 1; i < len(snaps); i++ {
		var got []string
		for _, e := range Diff(snaps[i-1], snaps[i]) {
			got = append(got, brief(e))
			if !e.Time.Equal(snaps[i].Time) {
				t.Errorf("step %d: %s has time %v, want the snapshot's %v", i, brief(e), e.Time, snaps[i].Time)
			}
			if e.Message == "" {
				t.Errorf("step %d: %s has no message", i, brief(e))
			}
		}
		if strings.Join(got, "\n") != strings.Join(want[i-1], "\n") {
			t.Errorf("step %d events:\n  %s\nwant:\n  %s", i, strings.Join(got, "\n  "), strings.Join(want[i-1], "\n  "))
		}
	}
}

func TestDiffAutomaticFailover(t *testing.T) {
	h := healthy()
	// After the election: 7004 says it is a master of 0-5460, epoch 7.
	promoted := edit(edit(h, 7004, func(n *node) { n.master, n.epoch, n.slots = "", 7, "0-5460" }), 7001, flag("fail"))
	promoted = edit(promoted, 7001, func(n *node) { n.slots = "" })
	stale := edit(h, 7001, flag("fail"))
	s := []Snapshot{
		snap(0, all(t, h)),
		// 7001 is killed.
		snap(1, all(t, h, 7001), 7001),
		// Two observers suspect it.
		snap(2, map[int]View{
			7002: viewFrom(t, 7002, edit(h, 7001, flag("fail?"))),
			7003: viewFrom(t, 7003, h),
			7004: viewFrom(t, 7004, h),
			7005: viewFrom(t, 7005, edit(h, 7001, flag("fail?"))),
			7006: viewFrom(t, 7006, h),
		}, 7001),
		// A third does; the first two are unchanged: no event twice.
		snap(3, map[int]View{
			7002: viewFrom(t, 7002, edit(h, 7001, flag("fail?"))),
			7003: viewFrom(t, 7003, edit(h, 7001, flag("fail?"))),
			7004: viewFrom(t, 7004, h),
			7005: viewFrom(t, 7005, edit(h, 7001, flag("fail?"))),
			7006: viewFrom(t, 7006, h),
		}, 7001),
		// FAIL is agreed and broadcast: one failed event, no suspicion by
		// those that went straight to fail.
		snap(4, all(t, stale, 7001), 7001),
		// 7004 wins the election; the others have not heard yet.
		snap(5, map[int]View{
			7002: viewFrom(t, 7002, stale),
			7003: viewFrom(t, 7003, stale),
			7004: viewFrom(t, 7004, promoted),
			7005: viewFrom(t, 7005, stale),
			7006: viewFrom(t, 7006, stale),
		}, 7001),
		// Everyone has: nothing new.
		snap(6, all(t, promoted, 7001), 7001),
		// 7001 restarts from its nodes.conf: master of its old slots at
		// epoch 1, which loses to 7004's epoch 7.
		snap(7, map[int]View{
			7001: viewFrom(t, 7001, h),
			7002: viewFrom(t, 7002, promoted),
			7003: viewFrom(t, 7003, promoted),
			7004: viewFrom(t, 7004, promoted),
			7005: viewFrom(t, 7005, promoted),
			7006: viewFrom(t, 7006, promoted),
		}),
		// It learns the new epoch and becomes 7004's replica; the others
		// clear its fail flag.
		snap(8, all(t, edit(promoted, 7001, func(n *node) { n.master, n.epoch, n.flags = "r1", 7, "" }))),
	}
	run(t, s, [][]string{
		{"unreachable 127.0.0.1:7001"},
		{"suspected 127.0.0.1:7001 peer=127.0.0.1:7002", "suspected 127.0.0.1:7001 peer=127.0.0.1:7005"},
		{"suspected 127.0.0.1:7001 peer=127.0.0.1:7003"},
		{"failed 127.0.0.1:7001"},
		{"failover 127.0.0.1:7004 from=127.0.0.1:7001 to=127.0.0.1:7004 slots=0-5460 epoch=7",
			"role 127.0.0.1:7004 from=replica of 127.0.0.1:7001 to=master"},
		nil,
		{"reachable 127.0.0.1:7001"},
		{"recovered 127.0.0.1:7001", "role 127.0.0.1:7001 from=master to=replica of 127.0.0.1:7004"},
	})
	failed := Diff(s[3], s[4])[0].Message
	if want := "seen failed by 2 masters, 3 replicas (of 5 answering)"; !strings.Contains(failed, want) {
		t.Errorf("failed message %q lacks %q", failed, want)
	}
}

func TestDiffGracefulFailover(t *testing.T) {
	h := healthy()
	after := edit(edit(h, 7005, func(n *node) { n.master, n.epoch, n.slots = "", 8, "5461-10922" }),
		7002, func(n *node) { n.master, n.epoch, n.slots = "r2", 8, "" })
	run(t, []Snapshot{snap(0, all(t, h)), snap(1, all(t, after)), snap(2, all(t, after))}, [][]string{
		{"failover 127.0.0.1:7005 from=127.0.0.1:7002 to=127.0.0.1:7005 slots=5461-10922 epoch=8",
			"role 127.0.0.1:7002 from=master to=replica of 127.0.0.1:7005",
			"role 127.0.0.1:7005 from=replica of 127.0.0.1:7002 to=master"},
		nil,
	})
}

func TestDiffSlotsAndEpochs(t *testing.T) {
	h := healthy()
	// Slot 100 moves from 7001 to 7002, which bumps its epoch; the
	// others learn it a round later: reported once.
	moved := edit(edit(h, 7001, func(n *node) { n.slots = "0-99 101-5460" }), 7002, func(n *node) { n.slots, n.epoch = "100 5461-10922", 4 })
	moved = edit(moved, 7005, func(n *node) { n.epoch = 4 })
	partly := all(t, h)
	partly[7001] = viewFrom(t, 7001, moved)
	partly[7002] = viewFrom(t, 7002, moved)
	// Then 7003 deletes its last slot.
	deleted := edit(moved, 7003, func(n *node) { n.slots = "10923-16382" })
	run(t, []Snapshot{
		snap(0, all(t, h)), snap(1, partly), snap(2, all(t, moved)), snap(3, all(t, deleted)),
	}, [][]string{
		{"slots 127.0.0.1:7002 from=127.0.0.1:7001 to=127.0.0.1:7002 slots=100", "epoch 127.0.0.1:7002 from=2 to=4 epoch=4"},
		nil,
		{"slots 127.0.0.1:7003 from=127.0.0.1:7003 slots=16383"},
	})
}

// An observer that stops answering takes its flags with it: that is no
// recovery, and its return is no new suspicion.
func TestDiffObserverChurnInventsNothing(t *testing.T) {
	h := healthy()
	suspecting := all(t, h)
	suspecting[7002] = viewFrom(t, 7002, edit(h, 7003, flag("fail?")))
	withoutIt := all(t, h, 7002)
	run(t, []Snapshot{
		snap(0, all(t, h)), snap(1, suspecting), snap(2, withoutIt, 7002), snap(3, suspecting),
	}, [][]string{
		{"suspected 127.0.0.1:7003 peer=127.0.0.1:7002"},
		{"unreachable 127.0.0.1:7002"},
		{"reachable 127.0.0.1:7002"},
	})
}

func TestDiffBaselineAndNewAddresses(t *testing.T) {
	h := healthy()
	if evs := Diff(Snapshot{}, snap(0, all(t, h, 7003), 7003)); len(evs) != 0 {
		t.Errorf("a baseline gave events: %v", evs)
	}
	// A node first read (learned from the others) and not answering.
	run(t, []Snapshot{snap(0, all(t, h, 7003)), snap(1, all(t, h, 7003), 7003)}, [][]string{{"unreachable 127.0.0.1:7003"}})
	// The same node read at a second address (a seed's alias) is one
	// observer: its suspicions are not reported twice.
	s1 := all(t, h)
	s2 := all(t, h)
	s2[7002] = viewFrom(t, 7002, edit(h, 7003, flag("fail?")))
	a, b := snap(0, s1), snap(1, s2)
	a.Views["localhost:7002"], b.Views["localhost:7002"] = s1[7002], s2[7002]
	run(t, []Snapshot{a, b}, [][]string{{"suspected 127.0.0.1:7003 peer=127.0.0.1:7002"}})
}

// The captured outputs of a real 7.0.15 cluster (internal/topology's
// testdata), as seen by 127.0.0.1:12001: a replica SIGSTOPped, suspected,
// failed, back.
func TestDiffCapturedOutputs(t *testing.T) {
	read := func(name string) View {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("..", "topology", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		nodes, err := topology.ParseNodes(string(b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return View{Nodes: nodes}
	}
	at := func(i int, names ...string) Snapshot {
		s := Snapshot{Time: t0.Add(time.Duration(i) * time.Second), Views: map[string]View{}}
		for _, n := range names {
			addr := "127.0.0.1:12001"
			if strings.Contains(n, "replica-view") || strings.Contains(n, "importing") {
				addr = map[bool]string{true: "127.0.0.1:12004", false: "127.0.0.1:12002"}[strings.Contains(n, "replica-view")]
			}
			s.Views[addr] = read(n)
		}
		return s
	}
	cases := []struct {
		name  string
		snaps []Snapshot
		want  [][]string
	}{
		{"replica stopped, suspected, failed, back", []Snapshot{
			at(0, "cluster-nodes-6-master-view.txt"), at(1, "cluster-nodes-pfail-or-fail.txt"),
			at(2, "cluster-nodes-fail.txt"), at(3, "cluster-nodes-6-master-view.txt"),
		}, [][]string{
			{"suspected 127.0.0.1:12004 peer=127.0.0.1:12001"},
			{"failed 127.0.0.1:12004"},
			{"recovered 127.0.0.1:12004"},
		}},
		{"fresh node to formed cluster", []Snapshot{
			at(0, "cluster-nodes-fresh.txt"), at(1, "cluster-nodes-6-master-view.txt"),
		}, [][]string{{
			"slots 127.0.0.1:12001 to=127.0.0.1:12001 slots=0-5460",
			"slots 127.0.0.1:12002 to=127.0.0.1:12002 slots=5461-10922",
			"slots 127.0.0.1:12003 to=127.0.0.1:12003 slots=10923-16383",
			"epoch 127.0.0.1:12001 from=0 to=1 epoch=1",
		}}},
		// Neither an open slot nor a hostname changes an owner or a role.
		{"migrating, importing, hostname", []Snapshot{
			at(0, "cluster-nodes-6-master-view.txt", "cluster-nodes-6-replica-view.txt"),
			at(1, "cluster-nodes-migrating.txt", "cluster-nodes-6-replica-view.txt", "cluster-nodes-importing.txt"),
			at(2, "cluster-nodes-hostname.txt", "cluster-nodes-6-replica-view.txt"),
		}, [][]string{nil, nil}},
		{"100 nodes, unchanged", []Snapshot{at(0, "cluster-nodes-100.txt"), at(1, "cluster-nodes-100.txt")}, [][]string{nil}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { run(t, c.snaps, c.want) })
	}
}
