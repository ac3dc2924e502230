package slots

import (
	"fmt"
	"math"

	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/topology"
)

// MinMasters is the smallest number of masters a cluster may have (as
// redis-cli --cluster create requires).
const MinMasters = 3

// splitSlots is redis-cli's float-based split. redis-cli computes in C
// float (32-bit): slots_per_node = 16384 / (float)masters, cursor += spn,
// last = lround(cursor + spn - 1). Reproducing the float32 rounding keeps
// the boundaries identical to redis-cli 7.0.15's below 9282 masters. From
// there on they differ for 333 master counts: redis-cli clamps last only
// when it exceeds 16384, so float32 drift makes it end a range at 16384
// and start the next at 16385, where this split clamps last to 16383.
// Neither split is valid that large: for 2989 master counts from 7542 on
// (those 333 among them) the drift has used up slot 16383 before the last
// master, which then gets slot 16384 (up to the last four masters get
// 16384, 16385, ...), a slot that does not exist; redis-cli's split does
// the same at those counts.
func splitSlots(masters int) []topology.SlotRange {
	if masters < 1 || masters > topology.SlotCount {
		return nil
	}
	spn := float32(topology.SlotCount) / float32(masters)
	out := make([]topology.SlotRange, masters)
	first := 0
	var cursor float32
	for i := range out {
		x := cursor + spn - 1 // float32 arithmetic, as in C
		last := int(math.Round(float64(x)))
		if last > topology.SlotCount-1 || i == masters-1 {
			last = topology.SlotCount - 1
		}
		if last < first { // only once drift has used up the slots (see above)
			last = first
		}
		out[i] = topology.SlotRange{Start: first, End: last}
		first = last + 1
		cursor += spn
	}
	return out
}

// nodeHost returns the host anti-affinity is judged by.
func nodeHost(n spec.Node) string { return n.Host }

// newPlan assigns replicas. Masters are the first m nodes in order. Every
// master first gets exactly `replicas` replicas; leftovers (when len(nodes)
// is not a multiple of replicas+1) go one per master in order, like
// redis-cli's second pass. Which replica goes to which master is decided
// greedily in spec order, under a feasibility check that keeps the number of
// replicas sharing a host with their master at the minimum possible (see
// sameHostFloor), so a replica only shares its master's host when no
// assignment could avoid it. Among feasible masters it prefers, in order: a
// different host, a master that has no replica on this host yet, the master
// with the most open places, then the lowest index. No randomness.
func newPlan(nodes []spec.Node, replicas int) (*Plan, error) {
	if replicas < 0 {
		return nil, fmt.Errorf("replicas must be >= 0, got %d", replicas)
	}
	seen := make(map[spec.Node]bool, len(nodes))
	for _, n := range nodes {
		if seen[n] {
			return nil, fmt.Errorf("node %s listed twice", n.Addr())
		}
		seen[n] = true
	}
	m := len(nodes) / (replicas + 1)
	if m < MinMasters {
		return nil, fmt.Errorf("%d nodes with %d replicas per master give %d masters; a cluster needs at least %d (that is %d nodes)",
			len(nodes), replicas, m, MinMasters, MinMasters*(replicas+1))
	}
	if m > topology.SlotCount {
		return nil, fmt.Errorf("%d masters: more than %d slots", m, topology.SlotCount)
	}
	ranges := splitSlots(m)
	p := &Plan{Shards: make([]Shard, m)}
	for i := range p.Shards {
		p.Shards[i] = Shard{Master: nodes[i], Slots: ranges[i], Epoch: uint64(i + 1)}
	}
	reps := nodes[m:]
	if len(reps) == 0 {
		return p, nil
	}

	// Capacity per master: replicas, plus the leftovers one per master.
	left := len(reps) - m*replicas
	capLeft := make([]int, m)
	for i := range capLeft {
		capLeft[i] = replicas + left/m
		if i < left%m {
			capLeft[i]++
		}
	}

	// Host bookkeeping for the feasibility check: v[h] = replicas not yet
	// placed on host h + open places on masters on host h.
	hostIdx := map[string]int{}
	hostOf := func(n spec.Node) int {
		h := nodeHost(n)
		i, ok := hostIdx[h]
		if !ok {
			i = len(hostIdx)
			hostIdx[h] = i
		}
		return i
	}
	mHost := make([]int, m)
	for i := 0; i < m; i++ {
		mHost[i] = hostOf(nodes[i])
	}
	rHost := make([]int, len(reps))
	for i, r := range reps {
		rHost[i] = hostOf(r)
	}
	v := make([]int, len(hostIdx))
	for i := range reps {
		v[rHost[i]]++
	}
	for i := range capLeft {
		v[mHost[i]] += capLeft[i]
	}
	total := len(reps) // replicas left to place == open places left
	best := sameHostFloor(v, total)
	same := 0
	// onHosts[master] lists the hosts its replicas are on so far (short).
	onHosts := make([][]int, m)
	has := func(mi, h int) bool {
		for _, x := range onHosts[mi] {
			if x == h {
				return true
			}
		}
		return false
	}

	for ri, r := range reps {
		h := rHost[ri]
		top := top3(v)
		chosen := -1
		var chosenKey [3]int
		for mi := 0; mi < m; mi++ {
			if capLeft[mi] == 0 {
				continue
			}
			g := mHost[mi]
			inc := 0
			if g == h {
				inc = 1
			}
			if same+inc+floorAfter(v, top, h, g, total-1) > best {
				continue
			}
			key := [3]int{inc, 0, -capLeft[mi]}
			if has(mi, h) {
				key[1] = 1
			}
			if chosen < 0 || less(key, chosenKey) {
				chosen, chosenKey = mi, key
			}
		}
		if chosen < 0 { // cannot happen: the optimum is always reachable
			return nil, fmt.Errorf("internal error: no master for replica %s", r.Addr())
		}
		g := mHost[chosen]
		p.Shards[chosen].Replicas = append(p.Shards[chosen].Replicas, r)
		capLeft[chosen]--
		v[h]--
		v[g]--
		total--
		if g == h {
			same++
		}
		if !has(chosen, h) {
			onHosts[chosen] = append(onHosts[chosen], h)
		}
	}
	return p, nil
}

func less(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// sameHostFloor is the fewest replicas that must share a host with their
// master. Placing replicas into masters' open places while avoiding the
// replica's own host is a transportation problem; by max-flow/min-cut its
// only binding cut isolates one host h, whose replicas (R_h) can use at most
// the open places elsewhere (total - C_h). So the floor is
// max(0, max_h (R_h + C_h) - total) with v[h] = R_h + C_h.
func sameHostFloor(v []int, total int) int {
	mx := 0
	for _, x := range v {
		mx = max(mx, x)
	}
	return max(0, mx-total)
}

// top3 returns the indexes of the three largest entries of v (-1 if absent).
func top3(v []int) [3]int {
	t := [3]int{-1, -1, -1}
	for i, x := range v {
		switch {
		case t[0] < 0 || x > v[t[0]]:
			t[0], t[1], t[2] = i, t[0], t[1]
		case t[1] < 0 || x > v[t[1]]:
			t[1], t[2] = i, t[1]
		case t[2] < 0 || x > v[t[2]]:
			t[2] = i
		}
	}
	return t
}

// floorAfter is sameHostFloor after placing one replica of host h on a
// master of host g (v[h]--, v[g]--, total already decremented), computed
// from the three largest entries in O(1).
func floorAfter(v []int, top [3]int, h, g, total int) int {
	mx := 0
	for _, i := range top {
		if i < 0 {
			continue
		}
		x := v[i]
		if i == h {
			x--
		}
		if i == g {
			x--
		}
		mx = max(mx, x)
	}
	return max(0, mx-total)
}
