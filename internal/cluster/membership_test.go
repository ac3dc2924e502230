package cluster

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rcluster/rcluster/internal/topology"
)

func TestReadNodesConf(t *testing.T) {
	nodes, err := readNodesConf(filepath.Join("testdata", "nodes-formed.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 3 {
		t.Fatalf("got %d nodes, want 3 (the vars line is not a node)", len(nodes))
	}
	v := nodeView{Addr: "127.0.0.1:16001", Nodes: nodes}
	me, ok := v.me()
	if !ok || me.ID != "9b0f966c63cb1f5404a456ff5e02ce868091f087" || topology.FormatRanges(me.Slots) != "0-5460" {
		t.Fatalf("myself = %+v, %v", me, ok)
	}
	if !v.formed() {
		t.Fatal("a node knowing two others is not formed")
	}

	fresh, err := readNodesConf(filepath.Join("testdata", "nodes-fresh.conf"))
	if err != nil || len(fresh) != 1 {
		t.Fatalf("fresh nodes.conf: %v, %d nodes", err, len(fresh))
	}
	if (nodeView{Nodes: fresh}).formed() {
		t.Fatal("a node that knows only itself and owns nothing counts as formed")
	}

	missing, err := readNodesConf(filepath.Join(t.TempDir(), "nope.conf"))
	if err != nil || missing != nil {
		t.Fatalf("missing file: %v, %v; want nil, nil", missing, err)
	}
	if (nodeView{}).formed() {
		t.Fatal("a node without state counts as formed")
	}
}

func TestReadNodesConfWithoutMyself(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nodes.conf")
	writeFile(t, p, "04e943090d57d413266940ad6cd26a3255dba6db 127.0.0.1:16003@26003 master - 0 0 3 connected 10923-16383\n")
	if _, err := readNodesConf(p); err == nil || !strings.Contains(err.Error(), "myself") {
		t.Fatalf("err = %v, want a complaint about the missing myself line", err)
	}
}

// synthetic cluster: ids "aaaa…", "bbbb…", "cccc…" on ports 7001-7003.
func id(c byte) string { return strings.Repeat(string(c), 40) }

func line(idc byte, port int, flags string, slots string) string {
	return fmt.Sprintf("%s 127.0.0.1:%d@%d %s - 0 0 1 connected %s", id(idc), port, port+10000, flags, slots)
}

func view(t *testing.T, port int, lines ...string) nodeView {
	t.Helper()
	ns, err := topology.ParseNodes(strings.Join(lines, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return nodeView{Addr: fmt.Sprintf("127.0.0.1:%d", port), Source: "test", Nodes: ns}
}

// healthy returns node i's view (0-based) of a healthy 3-master cluster.
func healthy(t *testing.T, i int) nodeView {
	ids := []byte{'a', 'b', 'c'}
	slots := []string{"0-5460", "5461-10922", "10923-16383"}
	var ls []string
	for j := range 3 {
		flags := "master"
		if j == i {
			flags = "myself,master"
		}
		ls = append(ls, line(ids[j], 7001+j, flags, slots[j]))
	}
	return view(t, 7001+i, ls...)
}

func membershipErr(t *testing.T, views []nodeView) *MembershipError {
	t.Helper()
	err := checkMembership(views)
	var me *MembershipError
	if !errors.As(err, &me) {
		t.Fatalf("checkMembership = %v, want a *MembershipError", err)
	}
	if !strings.Contains(err.Error(), "down --purge") || !strings.Contains(err.Error(), "nothing was started") {
		t.Errorf("error lacks the way out: %v", err)
	}
	return me
}

func TestCheckMembershipAccepts(t *testing.T) {
	all := []nodeView{healthy(t, 0), healthy(t, 1), healthy(t, 2)}
	if err := checkMembership(all); err != nil {
		t.Fatalf("healthy cluster: %v", err)
	}
	// Never started: no state anywhere.
	none := []nodeView{{Addr: "127.0.0.1:7001"}, {Addr: "127.0.0.1:7002"}, {Addr: "127.0.0.1:7003"}}
	if err := checkMembership(none); err != nil {
		t.Fatalf("fresh nodes: %v", err)
	}
	// Started once but never formed: each knows only itself.
	lone := []nodeView{view(t, 7001, line('a', 7001, "myself,master", "")), view(t, 7002, line('b', 7002, "myself,master", "")), {Addr: "127.0.0.1:7003"}}
	if err := checkMembership(lone); err != nil {
		t.Fatalf("lone nodes: %v", err)
	}
	// Handshake entries (random ids) and a partly gossiped view are fine.
	partial := healthy(t, 0)
	hs := view(t, 7001, line('f', 7009, "handshake", ""))
	partial.Nodes = append(partial.Nodes, hs.Nodes...)
	if err := checkMembership([]nodeView{partial, healthy(t, 1), healthy(t, 2)}); err != nil {
		t.Fatalf("handshake entry: %v", err)
	}
	// After a failover roles differ between views: still one cluster.
	after := view(t, 7002, line('a', 7001, "slave,fail", ""), line('b', 7002, "myself,master", "0-10922"), line('c', 7003, "master", "10923-16383"))
	if err := checkMembership([]nodeView{healthy(t, 0), after, healthy(t, 2)}); err != nil {
		t.Fatalf("after failover: %v", err)
	}
}

func TestCheckMembershipForeignNode(t *testing.T) {
	// 7001 carries the nodes.conf of another cluster (ports 9001-9003).
	foreign := view(t, 7001, line('x', 9001, "myself,master", "0-5460"), line('y', 9002, "master", "5461-10922"), line('z', 9003, "master", "10923-16383"))
	me := membershipErr(t, []nodeView{foreign, healthy(t, 1), healthy(t, 2)})
	if len(me.Nodes) != 1 || me.Nodes[0] != "127.0.0.1:7001" {
		t.Fatalf("blamed %v, want only 127.0.0.1:7001", me.Nodes)
	}
	msg := me.Error()
	for _, want := range []string{
		"127.0.0.1:7001 belongs to another cluster: it knows 127.0.0.1:9002, 127.0.0.1:9003",
		"127.0.0.1:7001 has id xxxxxxxx, but 127.0.0.1:7002, 127.0.0.1:7003 know node aaaaaaaa at that address",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}

func TestCheckMembershipReplacedNodesConf(t *testing.T) {
	// 7003 has a different id than the others know, but no outside nodes.
	other := view(t, 7003, line('d', 7003, "myself,master", "10923-16383"), line('a', 7001, "master", "0-5460"), line('b', 7002, "master", "5461-10922"))
	me := membershipErr(t, []nodeView{healthy(t, 0), healthy(t, 1), other})
	if len(me.Nodes) != 1 || me.Nodes[0] != "127.0.0.1:7003" {
		t.Fatalf("blamed %v, want 127.0.0.1:7003", me.Nodes)
	}
	if !strings.Contains(me.Error(), "127.0.0.1:7003 has id dddddddd, but 127.0.0.1:7001, 127.0.0.1:7002 know node cccccccc") {
		t.Errorf("unexpected message: %s", me.Error())
	}
}

func TestCheckMembershipDuplicateID(t *testing.T) {
	dup := healthy(t, 0)
	dup.Addr = "127.0.0.1:7002"
	me := membershipErr(t, []nodeView{healthy(t, 0), dup, healthy(t, 2)})
	if !strings.Contains(me.Error(), "127.0.0.1:7001 and 127.0.0.1:7002 have the same node id aaaaaaaa") {
		t.Errorf("unexpected message: %s", me.Error())
	}
}

func TestCheckMembershipLostNodesConf(t *testing.T) {
	me := membershipErr(t, []nodeView{healthy(t, 0), {Addr: "127.0.0.1:7002"}, healthy(t, 2)})
	if len(me.Nodes) == 0 || me.Nodes[0] != "127.0.0.1:7002" {
		t.Fatalf("blamed %v, want 127.0.0.1:7002 first", me.Nodes)
	}
	if !strings.Contains(me.Error(), "127.0.0.1:7002 has no cluster state while 127.0.0.1:7001, 127.0.0.1:7003 do") {
		t.Errorf("unexpected message: %s", me.Error())
	}
}
