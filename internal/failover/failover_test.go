package failover

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/topology"
)

// Node ids of a 3-master cluster with one replica each (a, b, c masters;
// ra, rb, rc their replicas), as 40-character ids.
var (
	idA  = strings.Repeat("a", 40)
	idB  = strings.Repeat("b", 40)
	idC  = strings.Repeat("c", 40)
	idRA = "1a" + strings.Repeat("0", 38)
	idRB = "1b" + strings.Repeat("0", 38)
	idRC = "1c" + strings.Repeat("0", 38)
)

type line struct {
	id, addr, flags, master, slots string
}

var healthy = []line{
	{idA, "127.0.0.1:7001", "master", "-", "0-5460"},
	{idB, "127.0.0.1:7002", "master", "-", "5461-10922"},
	{idC, "127.0.0.1:7003", "master", "-", "10923-16383"},
	{idRA, "127.0.0.1:7004", "slave", idA, ""},
	{idRB, "127.0.0.1:7005", "slave", idB, ""},
	{idRC, "127.0.0.1:7006", "slave", idC, ""},
}

// viewsOf builds every node's view of lines (config epoch: the line's
// position); edit changes one view's lines (by the viewing node's id)
// before it is parsed.
func viewsOf(t *testing.T, lines []line, edit func(viewer string, ls []line) []line) []*view {
	t.Helper()
	var out []*view
	for _, me := range lines {
		ls := append([]line(nil), lines...)
		if edit != nil {
			ls = edit(me.id, ls)
		}
		var b strings.Builder
		for i, l := range ls {
			flags := l.flags
			if l.id == me.id {
				flags = "myself," + flags
			}
			port := l.addr[strings.LastIndexByte(l.addr, ':')+1:]
			b.WriteString(l.id + " " + l.addr + "@1" + port + " " + flags + " " + l.master + " 0 0 " + strconv.Itoa(i+1) + " connected " + l.slots + "\n")
		}
		nodes, err := topology.ParseNodes(b.String())
		if err != nil {
			t.Fatal(err)
		}
		v := &view{addr: me.addr, nodes: nodes, info: map[string]string{"cluster_state": "ok"}, repl: map[string]string{"role": "master"}}
		v.me, _ = topology.Myself(nodes)
		if v.me.IsReplica() {
			v.repl = map[string]string{"role": "slave", "master_link_status": "up", "master_sync_in_progress": "0", "slave_repl_offset": "100"}
		}
		out = append(out, v)
	}
	return out
}

func TestFindNodeByAddrIDPrefixAndPort(t *testing.T) {
	nodes := viewsOf(t, healthy, nil)[0].nodes
	for name, want := range map[string]string{"127.0.0.1:7002": idB, idC: idC, "1b00": idRB, "7004": idRA} {
		n, err := findNode(nodes, name)
		if err != nil || n.ID != want {
			t.Errorf("findNode(%q) = %.8s, %v; want %.8s", name, n.ID, err, want)
		}
	}
	for _, name := range []string{"127.0.0.1:9999", "1", "1a0", "zzzzzz"} {
		_, err := findNode(nodes, name)
		if !errors.Is(err, ErrUnknownNode) || !strings.Contains(err.Error(), "127.0.0.1:7006 (1c000000, slave of 127.0.0.1:7003") {
			t.Errorf("findNode(%q): %v, want ErrUnknownNode listing the nodes", name, err)
		}
	}
}

func TestPlanPicksTheBestReplicaAndRefuses(t *testing.T) {
	two := append(append([]line(nil), healthy...), line{"2a" + strings.Repeat("0", 38), "127.0.0.1:7007", "slave", idA, ""})
	views := viewsOf(t, two, nil)
	viewOf(views, idRA).repl["slave_repl_offset"] = "90" // 2a... is ahead
	pl, err := planFailover(views[0], views, ByNode("127.0.0.1:7001"), Graceful)
	if err != nil || pl.replica.ID[:2] != "2a" || pl.master.ID != idA {
		t.Fatalf("plan = %+v, %v; want the replica with the higher offset", pl, err)
	}
	if got := strings.Join(pl.followers, ","); got != idA+","+idRA {
		t.Errorf("followers %s, want the old master then the other replica", got)
	}
	viewOf(views, "2a"+strings.Repeat("0", 38)).repl["master_link_status"] = "down"
	if pl, err = planFailover(views[0], views, BySlot(0), Graceful); err != nil || pl.replica.ID != idRA {
		t.Errorf("plan with the leader's link down = %+v, %v; want the replica whose link is up", pl, err)
	}
	if pl, err = planFailover(views[0], views, ByNode("2a00"), Graceful); err == nil {
		t.Errorf("graceful failover to a replica whose link is down was planned: %+v", pl)
	}

	// No replica; a master that does not answer; nofailover.
	alone := viewsOf(t, healthy[:3], nil)
	if _, err := planFailover(alone[0], alone, ByKey("x"), Graceful); !errors.Is(err, ErrNoReplica) || !strings.Contains(err.Error(), "has no replica") {
		t.Errorf("no replica: %v", err)
	}
	down := viewsOf(t, healthy, nil)
	down[0] = &view{addr: "127.0.0.1:7001", err: errors.New("connection refused"), unreachable: true}
	if _, err := planFailover(down[1], down, BySlot(1), Graceful); !errors.Is(err, ErrMasterDown) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("master down, graceful: %v", err)
	}
	if pl, err := planFailover(down[1], down, BySlot(1), Force); err != nil || !pl.masterDown || len(pl.followers) != 0 {
		t.Errorf("master down, force: %+v, %v", pl, err)
	}
	nf := viewsOf(t, healthy, func(_ string, ls []line) []line {
		ls[3].flags = "slave,nofailover"
		return ls
	})
	if _, err := planFailover(nf[0], nf, BySlot(0), Graceful); !errors.Is(err, ErrNoReplica) || !strings.Contains(err.Error(), "name it") {
		t.Errorf("only a nofailover replica: %v", err)
	}
	if pl, err := planFailover(nf[0], nf, ByNode(idRA), Graceful); err != nil || pl.replica.ID != idRA {
		t.Errorf("a nofailover replica named: %+v, %v", pl, err)
	}
}

// after is healthy with b's replica promoted: b follows it.
var after = func() []line {
	ls := append([]line(nil), healthy...)
	ls[1] = line{idB, "127.0.0.1:7002", "slave", idRB, ""}
	ls[4] = line{idRB, "127.0.0.1:7005", "master", "-", "5461-10922"}
	return ls
}()

func wantB() Want {
	return Want{Shards: []Shard{{Master: idRB, Slots: []topology.SlotRange{{Start: 5461, End: 10922}}, Replicas: []string{idB}}}}
}

func TestEvaluateAgreesOnlyWhenEveryAnsweringNodeDoes(t *testing.T) {
	if err := evaluate(viewsOf(t, after, nil), wantB()); err != nil {
		t.Fatalf("converged views: %v", err)
	}
	// One node has not heard yet that the old master follows the new one.
	lagging := viewsOf(t, after, func(viewer string, ls []line) []line {
		if viewer == idC {
			ls[1] = line{idB, "127.0.0.1:7002", "master", "-", ""}
		}
		return ls
	})
	err := evaluate(lagging, wantB())
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:7003: sees 127.0.0.1:7002 (bbbbbbbb) as master, want slave of 127.0.0.1:7005") {
		t.Errorf("lagging view: %v", err)
	}
	// The old master's replication is still syncing.
	syncing := viewsOf(t, after, nil)
	viewOf(syncing, idB).repl["master_sync_in_progress"] = "1"
	if err := evaluate(syncing, wantB()); err == nil || !strings.Contains(err.Error(), "127.0.0.1:7002: full sync") {
		t.Errorf("syncing old master: %v", err)
	}
	// A node that does not answer, flagged fail by all: not part of it.
	silent := viewsOf(t, after, func(_ string, ls []line) []line {
		ls[2].flags = "master,fail"
		return ls
	})
	silent[2] = &view{addr: "127.0.0.1:7003", err: errors.New("i/o timeout"), unreachable: true}
	w := wantB()
	if err := evaluate(silent, w); err == nil || !strings.Contains(err.Error(), "10923-16383 are owned by 127.0.0.1:7003, which does not answer") {
		t.Errorf("a silent master owning slots must still fail slots-served: %v", err)
	}
	// After WaitFailover: the dead old master is flagged fail and owns
	// nothing; it is not read (Want.Down), so its view is missing.
	dead := viewsOf(t, after, func(_ string, ls []line) []line {
		ls[1] = line{idB, "127.0.0.1:7002", "master,fail", "-", ""}
		return ls
	})
	dead = append(dead[:1], dead[2:]...)
	w = Want{Shards: []Shard{{Master: idRB, Slots: []topology.SlotRange{{Start: 5461, End: 10922}}}}, Down: []string{idB}}
	if err := evaluate(dead, w); err != nil {
		t.Errorf("dead old master flagged fail by all: %v", err)
	}
	// A node that answers but is flagged fail? by another does not agree.
	flagged := viewsOf(t, after, func(viewer string, ls []line) []line {
		if viewer == idA {
			ls[5].flags = "slave,fail?"
		}
		return ls
	})
	if err := evaluate(flagged, wantB()); err == nil || !strings.Contains(err.Error(), "fail?") {
		t.Errorf("answering node flagged fail?: %v", err)
	}
	// A node answering with an error (LOADING) does not agree.
	loading := viewsOf(t, after, nil)
	loading[5] = &view{addr: "127.0.0.1:7006", err: errors.New("LOADING Redis is loading the dataset in memory")}
	if err := evaluate(loading, wantB()); err == nil || !strings.Contains(err.Error(), "LOADING") {
		t.Errorf("loading node: %v", err)
	}
}

func TestProbeKeyHashesToItsSlot(t *testing.T) {
	for _, s := range []int{0, 5461, 16383} {
		k := probeKey(s)
		if !strings.HasPrefix(k, "rcluster:probe:") || topology.HashSlot(k) != s {
			t.Errorf("probeKey(%d) = %q (slot %d)", s, k, topology.HashSlot(k))
		}
	}
}

func TestResultStringNamesTheParts(t *testing.T) {
	r := &Result{Old: Member{idA, "127.0.0.1:7001"}, New: Member{idRA, "127.0.0.1:7004"},
		Slots: []topology.SlotRange{{Start: 0, End: 5460}}, Suspected: time.Second, Failed: 1200 * time.Millisecond,
		Elected: 2 * time.Second, Agreed: 2050 * time.Millisecond}
	want := "127.0.0.1:7001 (aaaaaaaa) -> 127.0.0.1:7004 (1a000000), slots 0-5460: detection 1.2s (fail? at 1s), election 800ms, propagation 50ms; agreed after 2.05s"
	if got := r.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
}

// TestCheckOpenSlotsAcceptsOnlyPairs: a held migration (source owning the
// slot and MIGRATING it to the target, the target IMPORTING it from the
// source) is a state the cluster agrees in; one side alone, or sides
// pointing elsewhere, is not.
func TestCheckOpenSlotsAcceptsOnlyPairs(t *testing.T) {
	mk := func(id string, slots []topology.SlotRange, mig, imp map[int]string) *view {
		return &view{addr: id + ":1", me: topology.Node{ID: id, Addr: id + ":1", Flags: []string{"myself", "master"}, Slots: slots, Migrating: mig, Importing: imp}}
	}
	own := []topology.SlotRange{{Start: 0, End: 100}}
	for _, tc := range []struct {
		name  string
		views []*view
		bad   string
	}{
		{"pair", []*view{mk("a", own, map[int]string{5: "b"}, nil), mk("b", nil, nil, map[int]string{5: "a"})}, ""},
		{"source only", []*view{mk("a", own, map[int]string{5: "b"}, nil), mk("b", nil, nil, nil)}, "which is not importing it"},
		{"target only", []*view{mk("a", own, nil, nil), mk("b", nil, nil, map[int]string{5: "a"})}, "which is not migrating it"},
		{"importing from a gone node", []*view{mk("a", own, nil, nil), mk("b", nil, nil, map[int]string{5: "x"})}, "which does not answer"},
		{"migrating a slot it does not own", []*view{mk("a", nil, map[int]string{5: "b"}, nil), mk("b", nil, nil, map[int]string{5: "a"})}, "does not own it"},
	} {
		var pr problems
		checkOpenSlots(&pr, tc.views, namesOf(tc.views))
		got := strings.Join(pr, "; ")
		if (tc.bad == "") != (len(pr) == 0) || !strings.Contains(got, tc.bad) {
			t.Errorf("%s: problems %q, want one containing %q", tc.name, got, tc.bad)
		}
	}
}
