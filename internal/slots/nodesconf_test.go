package slots

import (
	"context"
	"strings"
	"testing"

	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/topology"
)

func TestNodesConfsDescribeThePlan(t *testing.T) {
	var nodes []spec.Node
	for p := 7001; p <= 7006; p++ {
		nodes = append(nodes, spec.Node{Host: "127.0.0.1", Port: p})
	}
	p, err := NewPlan(nodes, 1)
	if err != nil {
		t.Fatal(err)
	}
	confs, err := NodesConfs(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(confs) != 6 {
		t.Fatalf("%d files, want 6", len(confs))
	}
	ids := map[string]bool{}
	for i, nc := range confs {
		text := string(nc.Data)
		lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
		if last := lines[len(lines)-1]; last != "vars currentEpoch 3 lastVoteEpoch 0" {
			t.Fatalf("node %d: last line %q", nc.Node.Port, last)
		}
		view, err := topology.ParseNodes(strings.Join(lines[:len(lines)-1], "\n"))
		if err != nil {
			t.Fatalf("node %d: %v\n%s", nc.Node.Port, err, text)
		}
		me, ok := topology.Myself(view)
		if !ok || me.ID != nc.ID || me.Port() != nc.Node.Port || me.BusPort != nc.Node.Port+BusOffset || len(nc.ID) != 40 {
			t.Fatalf("node %d: myself %+v (id %s)", nc.Node.Port, me, nc.ID)
		}
		if nc.Node != p.Nodes()[i] {
			t.Fatalf("file %d is for %v, want %v", i, nc.Node, p.Nodes()[i])
		}
		ids[nc.ID] = true
		if m := topology.SlotOwners(view); m.Covered() != topology.SlotCount {
			t.Fatalf("node %d: %d slots covered", nc.Node.Port, m.Covered())
		}
		for _, n := range view {
			if n.IsReplica() {
				master, ok := topology.FindNode(view, n.MasterID)
				if !ok || !master.IsMaster() || master.Epoch != n.Epoch {
					t.Fatalf("node %d: replica %s follows %q (%+v)", nc.Node.Port, n.Addr, n.MasterID, master)
				}
			}
		}
		if got := topology.RoleSignature(view); got != topology.RoleSignature(mustView(t, confs[0].Data)) {
			t.Fatalf("node %d: roles differ from node %d's file", nc.Node.Port, confs[0].Node.Port)
		}
	}
	if len(ids) != 6 {
		t.Fatalf("node ids not distinct: %v", ids)
	}
}

func mustView(t *testing.T, b []byte) []topology.Node {
	t.Helper()
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	v, err := topology.ParseNodes(strings.Join(lines[:len(lines)-1], "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestPrewriteVersionOK(t *testing.T) {
	for _, c := range []struct {
		major, minor int
		ok           bool
	}{{7, 0, true}, {7, 2, false}, {6, 2, false}, {8, 0, false}} {
		if got := PrewriteVersionOK(c.major, c.minor); got != c.ok {
			t.Errorf("PrewriteVersionOK(%d, %d) = %t", c.major, c.minor, got)
		}
	}
}
