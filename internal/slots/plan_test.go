package slots

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/topology"
)

// refSplit is an independent, literal transcription of redis-cli's
// clusterManagerCommandCreate slot loop (C float arithmetic, lround),
// written without sharing code with splitSlots. lround on the non-negative
// values that occur equals floor(x + 0.5) evaluated exactly in float64.
// One deliberate deviation: redis-cli clamps only last > 16384, so for 333
// master counts from 9282 up float32 drift makes it hand out slots that do
// not exist (redis-cli 7.0.15, 9282 masters: "Master[9280] -> Slots 16383 -
// 16384"); here, as in Split, a range never ends past 16383.
func refSplit(masters int) [][2]int {
	res := make([][2]int, 0, masters)
	slotsPerNode := float32(16384) / float32(masters)
	var first int64
	cursor := float32(0.0)
	for i := 0; i < masters; i++ {
		last := int64(math.Floor(float64(cursor+slotsPerNode-float32(1)) + 0.5))
		if last > 16383 || i == masters-1 {
			last = 16383
		}
		if last < first {
			last = first
		}
		res = append(res, [2]int{int(first), int(last)})
		first = last + 1
		cursor += slotsPerNode
	}
	return res
}

func TestSplitThreeMasters(t *testing.T) {
	want := []topology.SlotRange{{Start: 0, End: 5460}, {Start: 5461, End: 10922}, {Start: 10923, End: 16383}}
	if got := Split(3); !reflect.DeepEqual(got, want) {
		t.Fatalf("Split(3) = %v, want %v", got, want)
	}
}

func TestSplitMatchesReferenceFormula(t *testing.T) {
	for m := 3; m <= 500; m++ {
		got := Split(m)
		ref := refSplit(m)
		if len(got) != m {
			t.Fatalf("Split(%d): %d ranges", m, len(got))
		}
		for i := range got {
			if got[i].Start != ref[i][0] || got[i].End != ref[i][1] {
				t.Fatalf("Split(%d)[%d] = %v, reference %v", m, i, got[i], ref[i])
			}
		}
	}
}

// float64Split is redis-cli's formula computed in float64: what a port
// that forgets C's float would produce.
func float64Split(masters int) [][2]int {
	res := make([][2]int, 0, masters)
	spn := 16384 / float64(masters)
	first, cursor := 0, 0.0
	for i := 0; i < masters; i++ {
		last := int(math.Round(cursor + spn - 1))
		if last > 16383 || i == masters-1 {
			last = 16383
		}
		if last < first {
			last = first
		}
		res = append(res, [2]int{first, last})
		first = last + 1
		cursor += spn
	}
	return res
}

// The float32 arithmetic matters: for every master count whose float64
// boundaries differ from redis-cli's float32 ones, Split must give redis-cli's.
// The first such count is 78, and most counts above it differ (1768 of
// 3..2000, 16112 of 3..16384). The whole range costs seconds, so -short
// stops at 2000 masters, twice the largest cluster Redis recommends.
func TestSplitUsesFloat32LikeRedisCli(t *testing.T) {
	upTo, want := topology.SlotCount, 16112
	if testing.Short() {
		upTo, want = 2000, 1768
	}
	differs, firstDiff := 0, 0
	for m := MinMasters; m <= upTo; m++ {
		ref, f64 := refSplit(m), float64Split(m)
		if slices.Equal(ref, f64) {
			continue
		}
		differs++
		if firstDiff == 0 {
			firstDiff = m
		}
		got := Split(m)
		for i := range ref {
			if got[i].Start != ref[i][0] || got[i].End != ref[i][1] {
				t.Fatalf("Split(%d)[%d] = %v, redis-cli (float32) %v, float64 %v", m, i, got[i], ref[i], f64[i])
			}
		}
	}
	if firstDiff != 78 || differs != want {
		t.Fatalf("float32 and float64 differ for %d master counts up to %d, first %d: want %d, first 78", differs, upTo, firstDiff, want)
	}
}

func TestSplitCoverageAndContiguity(t *testing.T) {
	counts := []int{1, 2}
	for m := 3; m <= 1000; m++ {
		counts = append(counts, m)
	}
	counts = append(counts, 4096, 8191, 8192, 10000, 16383, 16384)
	for _, m := range counts {
		r := Split(m)
		if len(r) != m {
			t.Fatalf("Split(%d): %d ranges", m, len(r))
		}
		next, lo, hi := 0, math.MaxInt, 0
		for i, x := range r {
			if x.Start != next || x.End < x.Start {
				t.Fatalf("Split(%d)[%d] = %v: not contiguous (want start %d)", m, i, x, next)
			}
			n := x.End - x.Start + 1
			lo, hi = min(lo, n), max(hi, n)
			next = x.End + 1
		}
		if next != topology.SlotCount {
			t.Fatalf("Split(%d) ends at %d", m, next-1)
		}
		if hi-lo > 1 {
			t.Fatalf("Split(%d): unbalanced sizes %d..%d", m, lo, hi)
		}
	}
	if Split(0) != nil || Split(-1) != nil || Split(16385) != nil {
		t.Fatal("out-of-range master counts must give nil")
	}
}

func localNodes(n int) []spec.Node {
	out := make([]spec.Node, n)
	for i := range out {
		out[i] = spec.Node{Host: "127.0.0.1", Port: 7001 + i}
	}
	return out
}

func planString(p *Plan) string {
	var b strings.Builder
	for _, s := range p.Shards {
		fmt.Fprintf(&b, "%s[%d-%d e%d]<-", s.Master.Addr(), s.Slots.Start, s.Slots.End, s.Epoch)
		for i, r := range s.Replicas {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(r.Addr())
		}
		b.WriteByte(';')
	}
	return b.String()
}

func TestNewPlanSixNodesOneReplica(t *testing.T) {
	p, err := NewPlan(localNodes(6), 1)
	if err != nil {
		t.Fatal(err)
	}
	want := "127.0.0.1:7001[0-5460 e1]<-127.0.0.1:7004;" +
		"127.0.0.1:7002[5461-10922 e2]<-127.0.0.1:7005;" +
		"127.0.0.1:7003[10923-16383 e3]<-127.0.0.1:7006;"
	if got := planString(p); got != want {
		t.Fatalf("plan = %s\nwant %s", got, want)
	}
}

func TestNewPlanNoReplicas(t *testing.T) {
	p, err := NewPlan(localNodes(3), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := planString(p), "127.0.0.1:7001[0-5460 e1]<-;127.0.0.1:7002[5461-10922 e2]<-;127.0.0.1:7003[10923-16383 e3]<-;"; got != want {
		t.Fatalf("plan = %s\nwant %s", got, want)
	}
}

func TestNewPlanErrors(t *testing.T) {
	cases := []struct {
		n, replicas int
		want        string
	}{
		{2, 0, "at least 3"},
		{5, 1, "give 2 masters"},
		{8, 2, "give 2 masters"},
		{6, -1, "replicas must be >= 0"},
		{0, 0, "at least 3"},
	}
	for _, c := range cases {
		_, err := NewPlan(localNodes(c.n), c.replicas)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewPlan(%d nodes, %d) error = %v, want %q", c.n, c.replicas, err, c.want)
		}
	}
	dup := append(localNodes(3), spec.Node{Host: "127.0.0.1", Port: 7002})
	if _, err := NewPlan(dup, 0); err == nil || !strings.Contains(err.Error(), "127.0.0.1:7002 listed twice") {
		t.Errorf("duplicate: %v", err)
	}
}

// checkPlan asserts the structural invariants every plan must satisfy and
// returns how many replicas share a host with their master.
func checkPlan(t *testing.T, nodes []spec.Node, replicas int, p *Plan) int {
	t.Helper()
	m := len(nodes) / (replicas + 1)
	if len(p.Shards) != m {
		t.Fatalf("%d shards, want %d", len(p.Shards), m)
	}
	ranges := Split(m)
	used := map[string]bool{}
	epochs := map[uint64]bool{}
	total := 0
	left := len(nodes) - m*(replicas+1)
	same := 0
	for i, s := range p.Shards {
		if s.Master != nodes[i] {
			t.Fatalf("shard %d master %v, want %v (spec order)", i, s.Master, nodes[i])
		}
		if s.Slots != ranges[i] {
			t.Fatalf("shard %d slots %v, want %v", i, s.Slots, ranges[i])
		}
		if s.Epoch != uint64(i+1) || epochs[s.Epoch] {
			t.Fatalf("shard %d epoch %d", i, s.Epoch)
		}
		epochs[s.Epoch] = true
		want := replicas + left/m
		if i < left%m {
			want++
		}
		if len(s.Replicas) != want {
			t.Fatalf("shard %d has %d replicas, want %d", i, len(s.Replicas), want)
		}
		for _, n := range append([]spec.Node{s.Master}, s.Replicas...) {
			if used[n.Addr()] {
				t.Fatalf("%s used twice", n.Addr())
			}
			used[n.Addr()] = true
			total++
		}
		for _, r := range s.Replicas {
			if r.Host == s.Master.Host {
				same++
			}
		}
	}
	if total != len(nodes) {
		t.Fatalf("plan uses %d nodes, want %d", total, len(nodes))
	}
	return same
}

func TestNewPlanLeftoversOnePerMaster(t *testing.T) {
	// 11 nodes, replicas 2: 3 masters, 6 replicas, 2 leftovers for the
	// first two masters.
	nodes := localNodes(11)
	p, err := NewPlan(nodes, 2)
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, nodes, 2, p)
	// 23 nodes, replicas 5: 3 masters, 15 replicas, 5 leftovers: 2,2,1.
	nodes = localNodes(23)
	p, err = NewPlan(nodes, 5)
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, nodes, 5, p)
	if len(p.Shards[0].Replicas) != 7 || len(p.Shards[2].Replicas) != 6 {
		t.Fatalf("leftover distribution: %s", planString(p))
	}
}

func onHosts(hs ...string) []spec.Node {
	out := make([]spec.Node, len(hs))
	for i, h := range hs {
		out[i] = spec.Node{Host: h, Port: 7001 + i}
	}
	return out
}

func TestNewPlanAntiAffinity(t *testing.T) {
	// Three hosts, one master each, replicas listed in the same host order:
	// the naive "replica i -> master i" puts every replica next to its
	// master; the plan must put none there.
	nodes := onHosts("a", "b", "c", "a", "b", "c")
	p, err := NewPlan(nodes, 1)
	if err != nil {
		t.Fatal(err)
	}
	if same := checkPlan(t, nodes, 1, p); same != 0 {
		t.Fatalf("%d replicas share their master's host: %s", same, planString(p))
	}
	// A greedy that hands replicas of host c out last gets stuck with c->c
	// unless it looks ahead: a's replica must not take c's master.
	nodes = onHosts("a", "b", "c", "b", "a", "c")
	p, err = NewPlan(nodes, 1)
	if err != nil {
		t.Fatal(err)
	}
	if same := checkPlan(t, nodes, 1, p); same != 0 {
		t.Fatalf("%d replicas share their master's host: %s", same, planString(p))
	}
	// Masters on a, a, b and all three replicas on a: b's master has one
	// place, so two replicas must share host a with their master, no more.
	nodes = onHosts("a", "a", "b", "a", "a", "a")
	p, err = NewPlan(nodes, 1)
	if err != nil {
		t.Fatal(err)
	}
	if same := checkPlan(t, nodes, 1, p); same != 2 {
		t.Fatalf("same-host replicas = %d, want 2: %s", same, planString(p))
	}
	if p.Shards[2].Replicas[0].Host != "a" {
		t.Fatalf("master on b should get a replica from a: %s", planString(p))
	}
	// Replicas of one master spread over hosts when possible.
	nodes = onHosts("a", "b", "c", "b", "b", "c", "c", "a", "a")
	p, err = NewPlan(nodes, 2)
	if err != nil {
		t.Fatal(err)
	}
	if same := checkPlan(t, nodes, 2, p); same != 0 {
		t.Fatalf("same-host: %s", planString(p))
	}
	for _, s := range p.Shards {
		if s.Replicas[0].Host == s.Replicas[1].Host {
			t.Errorf("master %s has both replicas on %s: %s", s.Master.Addr(), s.Replicas[0].Host, planString(p))
		}
	}
}

// bruteFloor finds the minimum number of same-host pairs over all
// assignments of replicas to masters' places, by exhaustive search.
func bruteFloor(nodes []spec.Node, replicas int) int {
	m := len(nodes) / (replicas + 1)
	left := len(nodes) - m*(replicas+1)
	capLeft := make([]int, m)
	for i := range capLeft {
		capLeft[i] = replicas + left/m
		if i < left%m {
			capLeft[i]++
		}
	}
	reps := nodes[m:]
	best := math.MaxInt
	var rec func(i, same int)
	rec = func(i, same int) {
		if same >= best {
			return
		}
		if i == len(reps) {
			best = same
			return
		}
		for mi := 0; mi < m; mi++ {
			if capLeft[mi] == 0 {
				continue
			}
			capLeft[mi]--
			s := same
			if nodes[mi].Host == reps[i].Host {
				s++
			}
			rec(i+1, s)
			capLeft[mi]++
		}
	}
	rec(0, 0)
	return best
}

// Every small host layout: the plan reaches the exhaustive-search minimum of
// replicas sharing a host with their master, is balanced, and is the same
// when computed twice.
func TestNewPlanAntiAffinityOptimalExhaustive(t *testing.T) {
	hostNames := []string{"a", "b", "c"}
	for _, c := range []struct{ n, replicas int }{{6, 1}, {7, 1}, {8, 1}, {9, 2}} {
		total := 1
		for i := 0; i < c.n; i++ {
			total *= len(hostNames)
		}
		for code := 0; code < total; code++ {
			hs := make([]string, c.n)
			x := code
			for i := range hs {
				hs[i] = hostNames[x%len(hostNames)]
				x /= len(hostNames)
			}
			nodes := onHosts(hs...)
			p, err := NewPlan(nodes, c.replicas)
			if err != nil {
				t.Fatal(err)
			}
			same := checkPlan(t, nodes, c.replicas, p)
			if want := bruteFloor(nodes, c.replicas); same != want {
				t.Fatalf("hosts %v replicas %d: %d same-host replicas, optimum %d: %s", hs, c.replicas, same, want, planString(p))
			}
			q, _ := NewPlan(nodes, c.replicas)
			if planString(p) != planString(q) {
				t.Fatalf("not deterministic for %v", hs)
			}
		}
	}
}

func TestNewPlanLargeDeterministic(t *testing.T) {
	var hs []string
	for i := 0; i < 500; i++ {
		hs = append(hs, fmt.Sprintf("h%d", (i*7)%13))
	}
	nodes := onHosts(hs...)
	p1, err := NewPlan(nodes, 2)
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := NewPlan(nodes, 2)
	if planString(p1) != planString(p2) {
		t.Fatal("500-node plan not deterministic")
	}
	if same := checkPlan(t, nodes, 2, p1); same != 0 {
		t.Fatalf("%d same-host replicas with 13 hosts", same)
	}
}

func BenchmarkNewPlan500(b *testing.B) {
	var hs []string
	for i := 0; i < 500; i++ {
		hs = append(hs, fmt.Sprintf("10.0.0.%d", i%7))
	}
	nodes := onHosts(hs...)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewPlan(nodes, 1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewPlan500OneHost(b *testing.B) {
	nodes := localNodes(500)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewPlan(nodes, 1); err != nil {
			b.Fatal(err)
		}
	}
}

func TestStagedEdges(t *testing.T) {
	for _, c := range []struct{ masters, replicas int }{{3, 0}, {3, 1}, {3, 2}, {15, 1}, {50, 1}, {34, 2}} {
		var ms []*member
		for i := 0; i < c.masters; i++ {
			ms = append(ms, &member{shard: i})
		}
		for r := 0; r < c.replicas; r++ {
			for i := 0; i < c.masters; i++ {
				ms = append(ms, &member{shard: i, replica: true})
			}
		}
		n := len(ms)
		for _, s := range []meetStrategy{meetStaged, meetStagedHalf, meetStagedChords} {
			a, b := stagedEdges(ms, s.pairs)
			pairs := map[[2]int]int{}
			parent := make([]int, n)
			for i := range parent {
				parent[i] = i
			}
			find := func(x int) int {
				for parent[x] != x {
					x = parent[x]
				}
				return x
			}
			for stage, e := range [][][]int{a, b} {
				for i, js := range e {
					for _, j := range js {
						if i == j {
							t.Fatalf("self meet")
						}
						if stage == 0 && ms[i].replica && (ms[j].replica || ms[j].shard != ms[i].shard) {
							t.Fatalf("%s: stage 1 has replica %d meeting %d, not its master", s, i, j)
						}
						if stage == 0 && !ms[i].replica && ms[j].replica {
							t.Fatalf("%s: stage 1 has master meeting a replica", s)
						}
						pairs[[2]int{min(i, j), max(i, j)}]++
						parent[find(i)] = find(j)
					}
				}
			}
			for p, k := range pairs {
				if k != 1 {
					t.Fatalf("%s %+v: pair %v met %d times", s, c, p, k)
				}
			}
			for i := range parent {
				if find(i) != find(0) {
					t.Fatalf("%s %+v: node %d not connected", s, c, i)
				}
			}
			for i, m := range ms {
				if m.replica && a[i] == nil {
					t.Fatalf("%s: replica %d never meets its master in stage 1", s, i)
				}
			}
			if (s == meetStagedHalf || (s == meetStaged && n <= halfMax)) && len(pairs) != n*(n-1)/2 {
				t.Fatalf("%s %+v: %d pairs, want all %d", s, c, len(pairs), n*(n-1)/2)
			}
		}
	}
}
