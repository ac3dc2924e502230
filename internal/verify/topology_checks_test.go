package verify

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/rcluster/rcluster/internal/health"
	"github.com/rcluster/rcluster/internal/topology"
)

// fakeCluster builds a snapshot of three masters A, B, C (redis-cli's split)
// where every node sees the same thing; tests then break one view.
func fakeCluster() *Snapshot {
	ids := []string{"aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"}
	addrs := []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}
	split := []topology.SlotRange{{Start: 0, End: 5460}, {Start: 5461, End: 10922}, {Start: 10923, End: 16383}}
	s := &Snapshot{Addrs: addrs}
	for i := range ids {
		v := &NodeView{Addr: addrs[i], Info: map[string]string{"cluster_state": "ok", "cluster_known_nodes": "3"}, Repl: map[string]string{"role": "master"}}
		for j := range ids {
			flags := []string{"master"}
			if i == j {
				flags = []string{"myself", "master"}
			}
			n := topology.Node{ID: ids[j], Addr: addrs[j], Flags: flags, Epoch: uint64(j + 1), Connected: true,
				Slots: []topology.SlotRange{split[j]}}
			v.Nodes = append(v.Nodes, n)
			if i == j {
				v.Me = n
			}
		}
		s.Views = append(s.Views, v)
	}
	return s
}

// setMe changes a view's myself line, in Nodes and in Me alike (as a real
// node answers).
func setMe(v *NodeView, f func(*topology.Node)) {
	for i := range v.Nodes {
		if v.Nodes[i].IsMyself() {
			f(&v.Nodes[i])
			v.Me = v.Nodes[i]
		}
	}
}

func runCheck(t *testing.T, name string, s *Snapshot, exp Expect) error {
	t.Helper()
	for _, c := range topologyChecks() {
		if c.Name == name {
			return c.Run(context.Background(), &Env{Snap: s, Opts: Options{Expect: exp}})
		}
	}
	t.Fatalf("no check %q", name)
	return nil
}

func TestTopologyChecksPassOnHealthyView(t *testing.T) {
	for _, c := range topologyChecks() {
		if c.Name == "shards healthy" {
			continue
		}
		if err := c.Run(context.Background(), &Env{Snap: fakeCluster(), Opts: Options{Expect: Expect{Nodes: 3, Masters: 3}}}); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
}

func TestAgreementNamesTheDisagreeingNode(t *testing.T) {
	s := fakeCluster()
	// 7003 believes 7002 owns 10923-11000.
	v := s.Views[2]
	v.Nodes[1].Slots = append(v.Nodes[1].Slots, topology.SlotRange{Start: 10923, End: 11000})
	v.Nodes[2].Slots = []topology.SlotRange{{Start: 11001, End: 16383}}
	err := runCheck(t, "slot map agreement", s, Expect{})
	if err == nil {
		t.Fatal("disagreement not detected")
	}
	for _, want := range []string{"127.0.0.1:7003 disagrees on 78 slots", "10923-11000", "belongs to 127.0.0.1:7002", "others say 127.0.0.1:7003"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}

func TestFlagsAndEpochsAndRoles(t *testing.T) {
	s := fakeCluster()
	s.Views[0].Nodes[2].Flags = []string{"master", "fail?"}
	if err := runCheck(t, "no failed nodes", s, Expect{}); err == nil || !strings.Contains(err.Error(), "127.0.0.1:7001 sees 127.0.0.1:7003 as fail?") {
		t.Errorf("pfail not named: %v", err)
	}
	s = fakeCluster()
	setMe(s.Views[1], func(n *topology.Node) { n.Epoch = 1 })
	if err := runCheck(t, "config epochs unique", s, Expect{}); err == nil || !strings.Contains(err.Error(), "share config epoch 1") {
		t.Errorf("duplicate epoch not found: %v", err)
	}
	if err := runCheck(t, "masters and replicas", fakeCluster(), Expect{Masters: 3, Replicas: 1}); err == nil ||
		!strings.Contains(err.Error(), "master 127.0.0.1:7001 has 0 replicas, expected 1") {
		t.Errorf("missing replicas not reported: %v", err)
	}
	s = fakeCluster()
	s.Views[0].Info["cluster_state"] = "fail"
	if err := runCheck(t, "cluster_state ok", s, Expect{}); err == nil || !strings.Contains(err.Error(), "127.0.0.1:7001: cluster_state:fail") {
		t.Errorf("state not reported: %v", err)
	}
}

func TestCoverageNamesUnservedSlots(t *testing.T) {
	s := fakeCluster()
	setMe(s.Views[0], func(n *topology.Node) { n.Slots = []topology.SlotRange{{Start: 100, End: 5460}} }) // 7001 dropped 0-99 itself
	err := runCheck(t, "slots covered", s, Expect{})
	if err == nil || !strings.Contains(err.Error(), "slots 0-99 are not served: 127.0.0.1:7001 does not claim them") {
		t.Errorf("got %v", err)
	}
}

// Every criterion of health's definition is one of verify's checks (only
// the caller's own probes are up's alone), each in exactly one.
func TestEveryHealthCriterionIsChecked(t *testing.T) {
	in := map[health.Criterion]string{}
	for _, hc := range healthChecks {
		for _, c := range hc.criteria {
			if other, dup := in[c]; dup {
				t.Errorf("%s is in %q and %q", c, other, hc.name)
			}
			in[c] = hc.name
		}
	}
	for _, c := range health.Criteria() {
		if _, ok := in[c]; !ok && c != health.Extra {
			t.Errorf("criterion %q is in no verify check", c)
		}
	}
}

// verify's topology checks and health.Judge (what up waits for and status
// reports) give the same verdict on the same answers, whatever is broken.
func TestTopologyChecksAgreeWithJudge(t *testing.T) {
	for _, tc := range []struct {
		name    string
		break_  func(s *Snapshot)
		healthy bool
		failing string // the check that must fail
	}{
		{"healthy", func(s *Snapshot) {}, true, ""},
		{"a node does not answer", func(s *Snapshot) { s.Views[1] = &NodeView{Addr: s.Addrs[1], Err: errors.New("i/o timeout")} },
			false, "cluster_state ok"},
		{"cluster_state fail", func(s *Snapshot) { s.Views[2].Info["cluster_state"] = "fail" }, false, "cluster_state ok"},
		{"a node seen failing", func(s *Snapshot) { s.Views[0].Nodes[2].Flags = []string{"master", "fail?"} }, false, "no failed nodes"},
		{"a bus link down", func(s *Snapshot) { s.Views[0].Nodes[1].Connected = false }, false, "no failed nodes"},
		{"a slot migrating", func(s *Snapshot) {
			setMe(s.Views[0], func(n *topology.Node) { n.Migrating = map[int]string{42: s.Views[1].Me.ID} })
		}, false, "no open slots"},
		{"a view disagrees on slots", func(s *Snapshot) {
			s.Views[2].Nodes[1].Slots = append(s.Views[2].Nodes[1].Slots, topology.SlotRange{Start: 10923, End: 11000})
			s.Views[2].Nodes[2].Slots = []topology.SlotRange{{Start: 11001, End: 16383}}
		}, false, "slot map agreement"},
		{"a master drops its own slots", func(s *Snapshot) {
			setMe(s.Views[0], func(n *topology.Node) { n.Slots = []topology.SlotRange{{Start: 100, End: 5460}} })
		}, false, "slots covered"},
		{"a view knows one node more", func(s *Snapshot) {
			s.Views[1].Nodes = append(s.Views[1].Nodes, topology.Node{ID: "dddddddddddd", Addr: "127.0.0.1:7004", Flags: []string{"master"}, Connected: true})
		}, false, "known nodes"},
		{"INFO says replica, CLUSTER NODES master", func(s *Snapshot) {
			s.Views[0].Repl = map[string]string{"role": "slave", "master_link_status": "up"}
		}, false, "masters and replicas"},
		{"a replica link down", func(s *Snapshot) {
			s.Views[0].Repl = map[string]string{"role": "slave", "master_link_status": "down"}
		}, false, "replica links up"},
		{"two masters share an epoch", func(s *Snapshot) { setMe(s.Views[1], func(n *topology.Node) { n.Epoch = 1 }) },
			false, "config epochs unique"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fakeCluster()
			tc.break_(s)
			judged := health.Judge(s.Answers(), 3)
			var failed []string
			for _, c := range topologyChecks() {
				if c.Name == "shards healthy" { // CLUSTER SHARDS is verify's alone
					continue
				}
				if err := c.Run(context.Background(), &Env{Snap: s, Opts: Options{Expect: Expect{Nodes: 3}}}); err != nil {
					failed = append(failed, c.Name)
				}
			}
			if (len(judged) == 0) != tc.healthy || (len(failed) == 0) != tc.healthy {
				t.Fatalf("Judge %q, failed checks %q; want healthy %v", judged, failed, tc.healthy)
			}
			if tc.failing != "" && !slices.Contains(failed, tc.failing) {
				t.Errorf("failed checks %q lack %q", failed, tc.failing)
			}
		})
	}
}
