package migrate

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/topology"
)

const (
	idA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	idB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	idC = "cccccccccccccccccccccccccccccccccccccccc"
	idR = "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr" // replica of B
)

func node(id string) topology.Node {
	return topology.Node{ID: id, Addr: "127.0.0.1:" + map[string]string{idA: "7001", idB: "7002", idC: "7003", idR: "7004"}[id]}
}

func mp(slot int, src, dst string) pair { return pair{slot: slot, src: node(src), dst: node(dst)} }

func TestWavesNeverHaveANodeOnBothSides(t *testing.T) {
	in := []pair{mp(1, idA, idB), mp(2, idB, idC), mp(3, idA, idB), mp(4, idC, idA), mp(5, idB, idA)}
	ws := waves(in)
	got := [][]int{}
	for _, w := range ws {
		src, dst := map[string]bool{}, map[string]bool{}
		var slots []int
		for _, p := range w {
			src[p.src.ID], dst[p.dst.ID] = true, true
			slots = append(slots, p.slot)
		}
		for id := range src {
			if dst[id] {
				t.Errorf("wave %v: %.4s is both a source and a target", slots, id)
			}
		}
		got = append(got, slots)
	}
	want := [][]int{{1, 3}, {2, 5}, {4}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("waves = %v, want %v", got, want)
	}
	if ws := waves([]pair{mp(1, idA, idB), mp(2, idA, idC), mp(3, idC, idB)}); len(ws) != 2 {
		t.Errorf("A->B, A->C, C->B: %d waves, want 2 (C receives and gives)", len(ws))
	}
	if ws := waves(nil); len(ws) != 0 {
		t.Errorf("no pairs: %d waves", len(ws))
	}
}

func TestChunksGroupBySourceTargetAndStep(t *testing.T) {
	var in []pair
	for s := range 70 {
		in = append(in, mp(s, idA, idB))
		if s%10 == 0 {
			in = append(in, mp(1000+s, idA, idC))
		}
	}
	hold := mp(5000, idA, idB)
	hold.step = stepHold
	in = append(in, hold)
	cs := chunks(in, 32)
	var sizes []int
	for _, c := range cs {
		sizes = append(sizes, len(c))
		for _, p := range c[1:] {
			if p.src.ID != c[0].src.ID || p.dst.ID != c[0].dst.ID || p.step != c[0].step {
				t.Fatalf("chunk mixes %v and %v", c[0], p)
			}
		}
		for i := 1; i < len(c); i++ {
			if c[i].slot < c[i-1].slot {
				t.Fatalf("chunk out of order: %v", c)
			}
		}
	}
	if want := []int{32, 7, 32, 6, 1}; !reflect.DeepEqual(sizes, want) {
		t.Errorf("chunk sizes %v, want %v", sizes, want)
	}
}

func TestMigrateArgs(t *testing.T) {
	to := topology.Node{Addr: "10.0.0.2:7002"}
	cases := []struct {
		conn    redisconn.Options
		replace bool
		want    string
	}{
		{redisconn.Options{}, true, "MIGRATE 10.0.0.2 7002  0 1500 REPLACE KEYS k1 k2"},
		{redisconn.Options{Password: "pw"}, false, "MIGRATE 10.0.0.2 7002  0 1500 AUTH pw KEYS k1 k2"},
		{redisconn.Options{Username: "u", Password: "pw"}, true, "MIGRATE 10.0.0.2 7002  0 1500 REPLACE AUTH2 u pw KEYS k1 k2"},
	}
	for _, c := range cases {
		got := strings.TrimSpace(fmt.Sprintln(migrateArgs(to, 1500*time.Millisecond, c.conn, c.replace, []string{"k1", "k2"})...))
		if got != c.want {
			t.Errorf("migrateArgs = %q, want %q", got, c.want)
		}
	}
	if got := migrateArgs(to, 0, redisconn.Options{}, false, []string{"k"})[5]; got != int64(1) {
		t.Errorf("timeout 0 sent as %v, want 1 ms (0 would mean Redis's default)", got)
	}
}

// master builds a master's own myself line for analyse.
func master(id string, slots string, open ...string) topology.Node {
	n := node(id)
	n.Flags = []string{"master"}
	if slots != "" {
		for _, r := range strings.Split(slots, ",") {
			var a, b int
			if _, err := fmt.Sscanf(r, "%d-%d", &a, &b); err != nil {
				fmt.Sscanf(r, "%d", &a)
				b = a
			}
			n.Slots = append(n.Slots, topology.SlotRange{Start: a, End: b})
		}
	}
	for _, o := range open { // "100>id" migrating, "100<id" importing
		var s int
		if i := strings.IndexAny(o, "<>"); i > 0 {
			fmt.Sscanf(o[:i], "%d", &s)
			if o[i] == '>' {
				if n.Migrating == nil {
					n.Migrating = map[int]string{}
				}
				n.Migrating[s] = o[i+1:]
			} else {
				if n.Importing == nil {
					n.Importing = map[int]string{}
				}
				n.Importing[s] = o[i+1:]
			}
		}
	}
	return n
}

func TestAnalyse(t *testing.T) {
	const s = 100
	keys := func(a, b, c int64) map[string]map[int]int64 {
		return map[string]map[int]int64{idA: {s: a}, idB: {s: b}, idC: {s: c}}
	}
	replicaOfB := topology.Node{ID: idR, Addr: "127.0.0.1:7004", Flags: []string{"slave"}, MasterID: idB}
	type want struct {
		src, dst, origin  string
		claimed, mig, imp bool
		stable            []string
		srcKeys, dstKeys  int64
		problem           string // a substring; "" means none
		forward           step
	}
	cases := []struct {
		name     string
		masters  []topology.Node
		keys     map[string]map[int]int64
		ref      []topology.Node
		refOwner string
		want     want
	}{
		{"normal: migrating and importing",
			[]topology.Node{master(idA, "0-5460", "100>"+idB), master(idB, "5461-10922", "100<"+idA), master(idC, "10923-16383")},
			keys(3, 2, 0), nil, idA,
			want{src: idA, dst: idB, origin: idA, mig: true, imp: true, srcKeys: 3, dstKeys: 2, forward: stepMove}},
		{"importing only: the source was never told",
			[]topology.Node{master(idA, "0-5460"), master(idB, "5461-10922", "100<"+idA), master(idC, "10923-16383")},
			keys(5, 0, 0), nil, idA,
			want{src: idA, dst: idB, origin: idA, imp: true, srcKeys: 5, forward: stepMove}},
		{"importing from a source that failed over: its new master is the source",
			[]topology.Node{master(idA, "0-5460"), master(idB, "5461-10922", "100<"+idR), master(idC, "10923-16383")},
			keys(5, 1, 0), []topology.Node{{ID: idR, Flags: []string{"slave"}, MasterID: idA}}, idA,
			want{src: idA, dst: idB, origin: idA, imp: true, srcKeys: 5, dstKeys: 1, forward: stepMove}},
		{"migrating only: the target failed over, its new master holds the keys",
			[]topology.Node{master(idA, "0-5460", "100>"+idR), master(idB, "5461-10922"), master(idC, "10923-16383")},
			keys(4, 2, 0), []topology.Node{replicaOfB}, idA,
			want{src: idA, dst: idB, origin: idA, mig: true, srcKeys: 4, dstKeys: 2, forward: stepMove}},
		{"finalised on the target only",
			[]topology.Node{master(idA, "0-99,101-5460", "100>"+idB), master(idB, "100,5461-10922"), master(idC, "10923-16383")},
			keys(0, 7, 0), nil, idB,
			want{src: idA, dst: idB, origin: idA, claimed: true, mig: true, dstKeys: 7, forward: stepFinalise}},
		{"nobody claims it, the target imports it",
			[]topology.Node{master(idA, "0-99,101-5460"), master(idB, "5461-10922", "100<"+idA), master(idC, "10923-16383")},
			keys(0, 7, 0), nil, "",
			want{dst: idB, origin: idA, imp: true, dstKeys: 7, forward: stepFinalise}},
		{"a stray importer with no key is closed",
			[]topology.Node{master(idA, "0-5460", "100>"+idB), master(idB, "5461-10922", "100<"+idA), master(idC, "10923-16383", "100<"+idA)},
			keys(3, 2, 0), nil, idA,
			want{src: idA, dst: idB, origin: idA, mig: true, imp: true, stable: []string{idC}, srcKeys: 3, dstKeys: 2, forward: stepMove}},
		{"a stray importer holding keys",
			[]topology.Node{master(idA, "0-5460", "100>"+idB), master(idB, "5461-10922", "100<"+idA), master(idC, "10923-16383", "100<"+idA)},
			keys(3, 2, 1), nil, idA, want{problem: "imports it too"}},
		{"a bystander holding keys",
			[]topology.Node{master(idA, "0-5460", "100>"+idB), master(idB, "5461-10922", "100<"+idA), master(idC, "10923-16383")},
			keys(3, 2, 1), nil, idA, want{problem: "neither sends nor receives"}},
		{"finalised elsewhere before the source was empty",
			[]topology.Node{master(idA, "0-99,101-5460", "100>"+idB), master(idB, "100,5461-10922"), master(idC, "10923-16383")},
			keys(2, 7, 0), nil, idB, want{problem: "still holds 2 keys"}},
		{"claimed by two nodes",
			[]topology.Node{master(idA, "0-5460", "100>"+idB), master(idB, "100,5461-10922"), master(idC, "10923-16383")},
			keys(0, 7, 0), nil, idA, want{problem: "claimed by several"}},
		{"migrating on two nodes",
			[]topology.Node{master(idA, "0-5460", "100>"+idB), master(idB, "5461-10922", "100>"+idC), master(idC, "10923-16383")},
			keys(1, 0, 0), nil, idA, want{problem: "migrating on several"}},
		{"importing on two nodes, migrating on none",
			[]topology.Node{master(idA, "0-5460"), master(idB, "5461-10922", "100<"+idA), master(idC, "10923-16383", "100<"+idA)},
			keys(1, 0, 0), nil, idA, want{problem: "importing on several"}},
		{"the owner does not answer",
			[]topology.Node{master(idB, "5461-10922", "100<"+idA), master(idC, "10923-16383")},
			keys(0, 1, 0), []topology.Node{node(idA)}, idA, want{problem: "does not answer"}},
		{"the target does not answer",
			[]topology.Node{master(idA, "0-5460", "100>"+idB), master(idC, "10923-16383")},
			keys(1, 0, 0), []topology.Node{node(idB)}, idA, want{problem: "target"}},
	}
	for _, c := range cases {
		p := analyse(s, c.masters, c.keys, c.ref, c.refOwner)
		w := c.want
		if w.problem != "" {
			if !strings.Contains(p.problem, w.problem) {
				t.Errorf("%s: problem %q, want one containing %q", c.name, p.problem, w.problem)
			}
			continue
		}
		if p.problem != "" {
			t.Errorf("%s: unexpected problem %q", c.name, p.problem)
			continue
		}
		var stable []string
		for _, n := range p.stable {
			stable = append(stable, n.ID)
		}
		got := want{src: p.src.ID, dst: p.dst.ID, origin: p.origin.ID, claimed: p.claimed, mig: p.migrating, imp: p.importing,
			stable: stable, srcKeys: p.srcKeys, dstKeys: p.dstKeys, forward: p.forward().step}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, w)
		}
	}
}

// snap builds a snapshot from node lines as every node would print them
// (the myself flag set on the line of the node answering).
func snap(t *testing.T, lines string, down ...string) *snapshot {
	t.Helper()
	nodes, err := topology.ParseNodes(lines)
	if err != nil {
		t.Fatal(err)
	}
	s := &snapshot{self: map[string]*view{}}
	for _, n := range nodes {
		v := &view{addr: n.Addr}
		for _, d := range down {
			if d == n.ID {
				v.err = errors.New("connection refused")
			}
		}
		if v.err == nil {
			own := make([]topology.Node, len(nodes))
			copy(own, nodes)
			for i := range own {
				if own[i].ID == n.ID {
					own[i].Flags = append([]string{"myself"}, own[i].Flags...)
					v.me = own[i]
				}
			}
			v.nodes = own
			s.self[n.ID] = v
			if s.ref == nil {
				s.ref = v
			}
		}
		s.views = append(s.views, v)
	}
	return s
}

const lines = idA + " 127.0.0.1:7001@17001 master - 0 0 1 connected 0-5460\n" +
	idB + " 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922\n" +
	idC + " 127.0.0.1:7003@17003 master - 0 0 3 connected 10923-16383\n" +
	idR + " 127.0.0.1:7004@17004 slave " + idB + " 0 0 2 connected\n"

func TestResolve(t *testing.T) {
	s := snap(t, lines)
	got, err := resolve(s, []Move{{Slot: 0, To: idB}, {Slot: 5461, From: idB, To: idC}, {Slot: 10923, To: idC}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].src.ID != idA || got[0].dst.ID != idB || got[1].src.ID != idB || got[1].dst.Addr != "127.0.0.1:7003" {
		t.Errorf("resolve = %v (the move to the owner must be dropped)", got)
	}
	bad := map[string]Move{
		"out of range":   {Slot: 16384, To: idB},
		"negative":       {Slot: -1, To: idB},
		"unknown target": {Slot: 0, To: "nobody"},
		"replica":        {Slot: 0, To: idR},
		"same":           {Slot: 0, From: idA, To: idA},
		"not the owner":  {Slot: 0, From: idC, To: idB},
		"unknown source": {Slot: 0, From: "nobody", To: idB},
		"from is the to": {Slot: 0, From: idB, To: idB},
	}
	for name, m := range bad {
		if _, err := resolve(s, []Move{m}); !errors.Is(err, ErrBadMove) {
			t.Errorf("%s: %v, want ErrBadMove", name, err)
		}
	}
	if _, err := resolve(s, []Move{{Slot: 1, To: idB}, {Slot: 1, To: idC}}); !errors.Is(err, ErrBadMove) {
		t.Errorf("slot twice: %v, want ErrBadMove", err)
	}
	// A down target or source is not a usage error.
	d := snap(t, lines, idB)
	if _, err := resolve(d, []Move{{Slot: 0, To: idB}}); err == nil || errors.Is(err, ErrBadMove) {
		t.Errorf("down target: %v, want an error that is not ErrBadMove", err)
	}
	if _, err := resolve(d, []Move{{Slot: 5461, To: idA}}); err == nil || errors.Is(err, ErrBadMove) {
		t.Errorf("down source: %v, want an error that is not ErrBadMove", err)
	}
}

func TestAbortGroups(t *testing.T) {
	// A owns 0-2 (all open, to B); C owns 10923-16383 with 10923 open (to
	// B); D... B owns 5461 only, open to C.
	text := idA + " 127.0.0.1:7001@17001 master - 0 0 1 connected 0-2\n" +
		idB + " 127.0.0.1:7002@17002 master - 0 0 2 connected 3-10922\n" +
		idC + " 127.0.0.1:7003@17003 master - 0 0 3 connected 10923-16383\n"
	s := snap(t, text)
	pl := func(slot int, origin, dst string) plan {
		return plan{slot: slot, origin: s.self[origin].me, src: s.self[origin].me, dst: s.self[dst].me}
	}
	first, second, inPlace := abortGroups([]plan{pl(0, idA, idB), pl(1, idA, idB), pl(2, idA, idB), pl(10923, idC, idB), {slot: 9, problem: "x"}}, s)
	slots := func(ps []plan) []int {
		var out []int
		for _, p := range ps {
			out = append(out, p.slot)
		}
		return out
	}
	if got := slots(first); !reflect.DeepEqual(got, []int{0, 1, 10923}) {
		t.Errorf("first = %v, want [0 1 10923]", got)
	}
	if got := slots(second); !reflect.DeepEqual(got, []int{2}) {
		t.Errorf("second = %v, want [2] (A keeps its last slot while the others travel)", got)
	}
	if len(inPlace) != 0 {
		t.Errorf("inPlace = %v, want none", slots(inPlace))
	}
	one := snap(t, idA+" 127.0.0.1:7001@17001 master - 0 0 1 connected 0\n"+idB+" 127.0.0.1:7002@17002 master - 0 0 2 connected 1-16383\n")
	p := plan{slot: 0, origin: one.self[idA].me, src: one.self[idA].me, dst: one.self[idB].me}
	if f, sec, in := abortGroups([]plan{p}, one); len(f)+len(sec) != 0 || len(in) != 1 {
		t.Errorf("an origin with one slot, open: first %d second %d in place %d; want it returned in place", len(f), len(sec), len(in))
	}
}

func TestOpenSlotString(t *testing.T) {
	o := OpenSlot{Slot: 7, Migrating: true, Importing: true, SourceKeys: 3, TargetKeys: 2}
	o.Source.ID, o.Source.Addr, o.Target.ID, o.Target.Addr = idA, "127.0.0.1:7001", idB, "127.0.0.1:7002"
	want := "slot 7: 127.0.0.1:7001 (aaaaaaaa) -> 127.0.0.1:7002 (bbbbbbbb), migrating+importing, keys 3 -> 2"
	if got := o.String(); got != want {
		t.Errorf("String = %q\nwant %q", got, want)
	}
}
