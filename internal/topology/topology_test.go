package topology

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The testdata files were captured from real redis-server 7.0.15 nodes with
// testdata/capture.sh (a 6-node cluster made by redis-cli, replicas 1).

func readTestdata(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustParse(t testing.TB, name string) []Node {
	t.Helper()
	nodes, err := ParseNodes(readTestdata(t, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return nodes
}

const (
	id1 = "c94338177f54fe8d6bcbfaeb62bd1ee3186ecded" // 12001 master 0-5460
	id2 = "3eb47be53b79bfea14b39aa65f5092c1a8f5b17d" // 12002 master 5461-10922
	id3 = "2cc60fd913a54a025bade86c891b6467d81dc879" // 12003 master 10923-16383
	id4 = "c3618c791120d04c7d741d057d5475f256ccc8b0" // 12004 replica of id2
)

func TestParseNodesMasterView(t *testing.T) {
	nodes := mustParse(t, "cluster-nodes-6-master-view.txt")
	if len(nodes) != 6 {
		t.Fatalf("got %d nodes, want 6", len(nodes))
	}
	me, ok := Myself(nodes)
	if !ok {
		t.Fatal("no myself")
	}
	want := Node{
		ID: id1, Addr: "127.0.0.1:12001", BusPort: 22001,
		Flags: []string{"myself", "master"}, PongRecv: 1795471843000, Epoch: 1,
		Connected: true, Slots: []SlotRange{{0, 5460}},
	}
	if !reflect.DeepEqual(me, want) {
		t.Fatalf("myself =\n%+v\nwant\n%+v", me, want)
	}
	if !me.IsMaster() || me.IsReplica() || !me.IsMyself() || me.Failed() || me.PFailed() {
		t.Fatalf("flag helpers wrong for %v", me.Flags)
	}
	r, ok := FindNode(nodes, id4)
	if !ok {
		t.Fatal("replica 12004 missing")
	}
	if !r.IsReplica() || r.MasterID != id2 || r.Epoch != 2 || len(r.Slots) != 0 || r.Port() != 12004 || r.IP() != "127.0.0.1" {
		t.Fatalf("replica parsed as %+v", r)
	}
	masters, replicas := 0, 0
	for _, n := range nodes {
		if n.IsMaster() {
			masters++
		}
		if n.IsReplica() {
			replicas++
		}
		if n.Trouble() != "" {
			t.Errorf("%s: unexpected trouble %q", n.Addr, n.Trouble())
		}
	}
	if masters != 3 || replicas != 3 {
		t.Fatalf("masters=%d replicas=%d", masters, replicas)
	}
	m := SlotOwners(nodes)
	if m.Covered() != SlotCount || len(m.Uncovered()) != 0 {
		t.Fatalf("covered %d, uncovered %v", m.Covered(), m.Uncovered())
	}
	if got := FormatRanges(m.RangesOf(id2)); got != "5461-10922" {
		t.Fatalf("ranges of id2 = %s", got)
	}
	if m[0] != id1 || m[5460] != id1 || m[5461] != id2 || m[16383] != id3 {
		t.Fatal("slot owners wrong at boundaries")
	}
}

// Views of the same settled cluster from a master and a replica agree on
// slots and roles even though line order, ping times and myself differ.
func TestSignaturesAgreeAcrossViews(t *testing.T) {
	a := mustParse(t, "cluster-nodes-6-master-view.txt")
	b := mustParse(t, "cluster-nodes-6-replica-view.txt")
	if SlotSignature(a) != SlotSignature(b) {
		t.Fatalf("slot signatures differ:\n%s\n%s", SlotSignature(a), SlotSignature(b))
	}
	if RoleSignature(a) != RoleSignature(b) {
		t.Fatalf("role signatures differ:\n%s\n%s", RoleSignature(a), RoleSignature(b))
	}
	want := id3 + ":10923-16383|" + id2 + ":5461-10922|" + id1 + ":0-5460"
	if got := SlotSignature(a); got != want {
		t.Fatalf("slot signature = %s\nwant %s", got, want)
	}
	// A view where a replica still shows as master (right after REPLICATE)
	// or where one slot moved must not match.
	c := append([]Node(nil), a...)
	for i := range c {
		if c[i].ID == id4 {
			c[i].Flags = []string{"master"}
			c[i].MasterID = ""
		}
	}
	if RoleSignature(c) == RoleSignature(a) {
		t.Fatal("role signature ignores a role change")
	}
	d := append([]Node(nil), a...)
	for i := range d {
		if d[i].ID == id1 {
			d[i].Slots = []SlotRange{{0, 5459}}
		}
		if d[i].ID == id2 {
			d[i].Slots = []SlotRange{{5460, 10922}}
		}
	}
	if SlotSignature(d) == SlotSignature(a) {
		t.Fatal("slot signature ignores a moved slot")
	}
	// Split ranges describing the same slots give the same signature.
	e := append([]Node(nil), a...)
	for i := range e {
		if e[i].ID == id1 {
			e[i].Slots = []SlotRange{{100, 5460}, {0, 99}}
		}
	}
	if SlotSignature(e) != SlotSignature(a) {
		t.Fatal("slot signature not canonical over range splits")
	}
}

func TestParseNodesReplicaView(t *testing.T) {
	nodes := mustParse(t, "cluster-nodes-6-replica-view.txt")
	me, _ := Myself(nodes)
	if me.ID != id4 || !me.IsReplica() || me.MasterID != id2 {
		t.Fatalf("myself = %+v", me)
	}
}

func TestParseNodesFresh(t *testing.T) {
	nodes := mustParse(t, "cluster-nodes-fresh.txt")
	if len(nodes) != 1 {
		t.Fatalf("got %d nodes", len(nodes))
	}
	n := nodes[0]
	// A node that was never met does not know its own IP yet.
	if n.Addr != ":12001" || n.BusPort != 22001 || !n.IsMyself() || n.Epoch != 0 || len(n.Slots) != 0 {
		t.Fatalf("fresh node = %+v", n)
	}
	if n.Port() != 12001 || n.IP() != "" {
		t.Fatalf("port=%d ip=%q", n.Port(), n.IP())
	}
}

func TestParseNodesOpenSlots(t *testing.T) {
	mig := mustParse(t, "cluster-nodes-migrating.txt")
	me, _ := Myself(mig)
	if me.Migrating[100] != id2 || len(me.Migrating) != 1 || me.Importing != nil {
		t.Fatalf("migrating = %v importing = %v", me.Migrating, me.Importing)
	}
	if !reflect.DeepEqual(me.Slots, []SlotRange{{0, 5460}}) {
		t.Fatalf("slots = %v", me.Slots)
	}
	if !reflect.DeepEqual(me.OpenSlots(), []int{100}) {
		t.Fatalf("open slots = %v", me.OpenSlots())
	}
	imp := mustParse(t, "cluster-nodes-importing.txt")
	me, _ = Myself(imp)
	if me.Importing[100] != id1 || len(me.Importing) != 1 || me.Migrating != nil {
		t.Fatalf("importing = %v migrating = %v", me.Importing, me.Migrating)
	}
}

func TestParseNodesHostname(t *testing.T) {
	nodes := mustParse(t, "cluster-nodes-hostname.txt")
	n, _ := FindNode(nodes, id2)
	if n.Hostname != "node-b.example" || n.Addr != "127.0.0.1:12002" || n.BusPort != 22002 {
		t.Fatalf("node with hostname = %+v", n)
	}
	o, _ := FindNode(nodes, id1)
	if o.Hostname != "" {
		t.Fatalf("hostname leaked: %q", o.Hostname)
	}
}

func TestParseNodesFailFlags(t *testing.T) {
	p := mustParse(t, "cluster-nodes-pfail-or-fail.txt")
	n, _ := FindNode(p, id4)
	if !n.PFailed() || n.Failed() || n.Trouble() != "fail?" || n.PingSent == 0 {
		t.Fatalf("pfail node = %+v trouble=%q", n, n.Trouble())
	}
	f := mustParse(t, "cluster-nodes-fail.txt")
	n, _ = FindNode(f, id4)
	if !n.Failed() || n.PFailed() || n.Trouble() != "fail" {
		t.Fatalf("fail node = %+v", n)
	}
}

// noaddr / handshake lines are hard to provoke on demand; these follow the
// format Redis 7.0 prints for them (clusterGenNodeDescription).
func TestParseNodesNoaddrAndHandshake(t *testing.T) {
	text := "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca :0@0 master,fail,noaddr - 1795471845615 1795471845112 4 disconnected\r\n" +
		"2b3d0c8f5d9e1f0b9a8c7d6e5f4a3b2c1d0e9f8a 127.0.0.1:7002@17002 handshake - 1795471845615 0 0 disconnected\r\n" +
		"9f8a2b3d0c8f5d9e1f0b9a8c7d6e5f4a3b2c1d0e ::1:7003@17003 master,nofailover - 0 0 5 connected 1-3 7\n"
	nodes, err := ParseNodes(text)
	if err != nil {
		t.Fatal(err)
	}
	if nodes[0].Addr != ":0" || nodes[0].BusPort != 0 || nodes[0].Connected || nodes[0].Trouble() != "fail,noaddr" {
		t.Fatalf("noaddr = %+v trouble %q", nodes[0], nodes[0].Trouble())
	}
	if nodes[1].Trouble() != "handshake" || nodes[1].IsMaster() {
		t.Fatalf("handshake = %+v", nodes[1])
	}
	if nodes[2].Addr != "[::1]:7003" || nodes[2].Port() != 7003 || nodes[2].IP() != "::1" {
		t.Fatalf("ipv6 = %+v", nodes[2])
	}
	if FormatRanges(nodes[2].Slots) != "1-3,7" {
		t.Fatalf("slots = %v", nodes[2].Slots)
	}
}

func TestParseNodesErrorsNameTheLine(t *testing.T) {
	good := strings.TrimSpace(readTestdata(t, "cluster-nodes-fresh.txt"))
	bad := []string{
		"abc 127.0.0.1:7000@17000 master - 0 0 1",                  // too few fields
		"abc 127.0.0.1:7000 master - 0 0 1 connected",              // no @cport
		"abc 127.0.0.1@17000 master - 0 0 1 connected",             // no port
		"abc 127.0.0.1:x@17000 master - 0 0 1 connected",           // bad port
		"abc 127.0.0.1:7000@17000 master - x 0 1 connected",        // bad ping
		"abc 127.0.0.1:7000@17000 master - 0 x 1 connected",        // bad pong
		"abc 127.0.0.1:7000@17000 master - 0 0 -1 connected",       // bad epoch
		"abc 127.0.0.1:7000@17000 master - 0 0 1 maybe",            // bad link
		"abc 127.0.0.1:7000@17000 master - 0 0 1 connected 16384",  // slot range
		"abc 127.0.0.1:7000@17000 master - 0 0 1 connected 5-3",    // reversed
		"abc 127.0.0.1:7000@17000 master - 0 0 1 connected 1-",     // open range
		"abc 127.0.0.1:7000@17000 master - 0 0 1 connected [1->-]", // no id
		"abc 127.0.0.1:7000@17000 master - 0 0 1 connected [1]",    // unknown
		"abc 127.0.0.1:7000@17000 master - 0 0 1 connected [1->-x", // unterminated
	}
	for _, b := range bad {
		_, err := ParseNodes(good + "\n" + b + "\n")
		if err == nil {
			t.Errorf("no error for %q", b)
			continue
		}
		if !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "abc 127.0.0.1") {
			t.Errorf("error does not name the line: %v", err)
		}
	}
}

func TestParseInfo(t *testing.T) {
	ci := ParseInfo(readTestdata(t, "cluster-info-ok.txt"))
	if ci["cluster_state"] != "ok" || ci["cluster_known_nodes"] != "6" || ci["cluster_slots_assigned"] != "16384" {
		t.Fatalf("cluster info = %v", ci)
	}
	fresh := ParseInfo(readTestdata(t, "cluster-info-fresh.txt"))
	if fresh["cluster_state"] != "fail" || fresh["cluster_known_nodes"] != "1" {
		t.Fatalf("fresh cluster info = %v", fresh)
	}
	info := ParseInfo(readTestdata(t, "info-master.txt"))
	if info["cluster_enabled"] != "1" || info["role"] != "master" || info["redis_version"] != "7.0.15" {
		t.Fatalf("info: cluster_enabled=%q role=%q version=%q", info["cluster_enabled"], info["role"], info["redis_version"])
	}
	for k := range info {
		if strings.HasPrefix(k, "#") || strings.ContainsAny(k, "\r\n") {
			t.Fatalf("bad key %q", k)
		}
	}
	repl := ParseInfo(readTestdata(t, "info-replication-replica.txt"))
	if repl["role"] != "slave" || repl["master_link_status"] != "up" || repl["master_port"] != "12002" {
		t.Fatalf("replication = %v", repl)
	}
	// Values may contain colons; only the first one splits.
	if got := ParseInfo("# X\r\nexecutable:/a:b\r\n\r\nbroken\n")["executable"]; got != "/a:b" {
		t.Fatalf("value with colon = %q", got)
	}
}

func TestFormatAndCountRanges(t *testing.T) {
	cases := []struct {
		r     []SlotRange
		s     string
		count int
	}{
		{nil, "", 0},
		{[]SlotRange{{0, 5460}}, "0-5460", 5461},
		{[]SlotRange{{0, 5460}, {5461, 5461}}, "0-5460,5461", 5462},
		{[]SlotRange{{7, 7}, {9, 10}}, "7,9-10", 3},
		{[]SlotRange{{0, 16383}}, "0-16383", 16384},
	}
	for _, c := range cases {
		if got := FormatRanges(c.r); got != c.s {
			t.Errorf("FormatRanges(%v) = %q, want %q", c.r, got, c.s)
		}
		if got := CountSlots(c.r); got != c.count {
			t.Errorf("CountSlots(%v) = %d, want %d", c.r, got, c.count)
		}
	}
}

func TestMergeRanges(t *testing.T) {
	in := []SlotRange{{10, 20}, {0, 5}, {6, 9}, {15, 30}, {40, 40}, {3, 4}}
	got := MergeRanges(in)
	want := []SlotRange{{0, 30}, {40, 40}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("MergeRanges = %v, want %v", got, want)
	}
	if in[0] != (SlotRange{10, 20}) {
		t.Fatal("input modified")
	}
	if MergeRanges(nil) != nil {
		t.Fatal("nil input")
	}
}

// Uncovered(nodes) must agree with the slot map's answer on every shape:
// gaps at both ends, overlaps, adjacency, out-of-range input, no slots.
func TestUncoveredMatchesSlotMap(t *testing.T) {
	cases := [][]Node{
		nil,
		{{ID: "a", Slots: []SlotRange{{0, 16383}}}},
		{{ID: "a", Slots: []SlotRange{{0, 99}, {200, 299}}}, {ID: "b", Slots: []SlotRange{{300, 16382}}}},
		{{ID: "a", Slots: []SlotRange{{5, 10}}}, {ID: "b", Slots: []SlotRange{{8, 20}, {21, 21}}}},
		{{ID: "a", Slots: []SlotRange{{-5, 3}, {16380, 20000}}}},
		{{ID: "a", Slots: []SlotRange{{7, 7}}}, {ID: "b", Slots: []SlotRange{{7, 7}, {9, 9}}}},
	}
	for i, nodes := range cases {
		want := FormatRanges(SlotOwners(nodes).Uncovered())
		if got := FormatRanges(Uncovered(nodes)); got != want {
			t.Errorf("case %d: Uncovered = %q, slot map says %q", i, got, want)
		}
	}
}

func TestSlotMapUncovered(t *testing.T) {
	nodes := []Node{
		{ID: "a", Slots: []SlotRange{{0, 99}, {200, 299}}},
		{ID: "b", Slots: []SlotRange{{300, 16382}}},
	}
	m := SlotOwners(nodes)
	if got := FormatRanges(m.Uncovered()); got != "100-199,16383" {
		t.Fatalf("uncovered = %s", got)
	}
	if m.Covered() != SlotCount-101 {
		t.Fatalf("covered = %d", m.Covered())
	}
	if got := FormatRanges(m.RangesOf("a")); got != "0-99,200-299" {
		t.Fatalf("ranges of a = %s", got)
	}
}

// Known CRC16 slots, as CLUSTER KEYSLOT answers them on Redis 7.0.
func TestHashSlot(t *testing.T) {
	cases := map[string]int{
		"":                0,
		"foo":             12182,
		"bar":             5061,
		"somekey":         11058,
		"{user1000}.some": 3443,
		"foo{}{bar}":      8363, // empty first tag: whole key
		"{}":              15257,
		"a{b":             13340,
		"123456789":       12739, // CRC16/XMODEM check value 0x31C3
	}
	for k, want := range cases {
		if got := HashSlot(k); got != want {
			t.Errorf("HashSlot(%q) = %d, want %d", k, got, want)
		}
	}
	if HashSlot("{user1000}.a") != HashSlot("user1000") || HashSlot("x{user1000}") != HashSlot("user1000") {
		t.Error("hash tag not honoured")
	}
}

func TestKeyForSlot(t *testing.T) {
	for _, s := range []int{0, 1, 5460, 5461, 10922, 10923, 16383} {
		k := KeyForSlot(s)
		if HashSlot(k) != s || !strings.HasPrefix(k, "rcluster:") {
			t.Fatalf("KeyForSlot(%d) = %q hashes to %d", s, k, HashSlot(k))
		}
	}
	for s := 0; s < SlotCount; s++ {
		if HashSlot(KeyForSlot(s)) != s {
			t.Fatalf("slot %d", s)
		}
	}
}

func FuzzParseNodes(f *testing.F) {
	for _, name := range []string{
		"cluster-nodes-6-master-view.txt", "cluster-nodes-fresh.txt",
		"cluster-nodes-migrating.txt", "cluster-nodes-importing.txt",
		"cluster-nodes-hostname.txt", "cluster-nodes-fail.txt",
	} {
		f.Add(readTestdata(f, name))
	}
	f.Add(":0@0 noaddr - 0 0 0 disconnected [1-<-]")
	f.Add("a ::1:7000@17000,h,shard-id=x master - 0 0 1 connected 0-16383")
	f.Fuzz(func(t *testing.T, s string) {
		nodes, err := ParseNodes(s)
		if err != nil {
			return
		}
		for _, n := range nodes {
			for _, r := range n.Slots {
				if r.Start < 0 || r.End >= SlotCount || r.End < r.Start {
					t.Fatalf("bad range %v from %q", r, s)
				}
			}
			_ = n.Trouble()
			_ = n.Port()
			_ = n.OpenSlots()
		}
		_ = SlotSignature(nodes)
		_ = RoleSignature(nodes)
		if a, b := FormatRanges(SlotOwners(nodes).Uncovered()), FormatRanges(Uncovered(nodes)); a != b {
			t.Fatalf("Uncovered = %q, slot map says %q", b, a)
		}
	})
}

// cluster-nodes-100.txt is CLUSTER NODES from one master of a real 100-node
// cluster (50 masters, 50 replicas) formed by slots.Form on 7.0.15 nodes.
func TestParseNodes100(t *testing.T) {
	nodes := mustParse(t, "cluster-nodes-100.txt")
	masters := 0
	for _, n := range nodes {
		if n.IsMaster() {
			masters++
			if len(n.Slots) != 1 {
				t.Fatalf("%s: slots %v", n.Addr, n.Slots)
			}
		} else if !n.IsReplica() || n.MasterID == "" {
			t.Fatalf("%s: flags %v master %q", n.Addr, n.Flags, n.MasterID)
		}
	}
	if len(nodes) != 100 || masters != 50 || SlotOwners(nodes).Covered() != SlotCount {
		t.Fatalf("%d nodes, %d masters, %d slots covered", len(nodes), masters, SlotOwners(nodes).Covered())
	}
}

func BenchmarkParseNodes100(b *testing.B) {
	text := readTestdata(b, "cluster-nodes-100.txt")
	if n, err := ParseNodes(text); err != nil || len(n) != 100 {
		b.Fatalf("setup: %d nodes, %v", len(n), err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := ParseNodes(text); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSlotSignature100(b *testing.B) {
	nodes := mustParse(b, "cluster-nodes-100.txt")
	b.ReportAllocs()
	for b.Loop() {
		_ = SlotSignature(nodes)
	}
}

func TestNodeOwns(t *testing.T) {
	n := Node{Slots: []SlotRange{{Start: 0, End: 10}, {Start: 20, End: 20}}}
	for slot, want := range map[int]bool{0: true, 10: true, 11: false, 20: true, 21: false} {
		if n.Owns(slot) != want {
			t.Errorf("Owns(%d) = %v, want %v", slot, !want, want)
		}
	}
}
