package reshard

import (
	"sort"
	"strings"
)

// Drain plans moving every slot of the leaving masters (ids) to the other
// masters before the leaving ones are removed, spread so that the counts
// end as even as they can without moving any slot between the masters that
// stay: slot by slot, each goes to the remaining master that has fewest at
// that point (ties by address). Masters that own no slot count as remaining
// ones, so new masters joining in the same change are filled first.
//
// The moves come as runs: the remaining masters, fewest slots first, each
// take their share from the leaving masters' slots in ascending order
// (leaving masters in address order).
//
// Errors (all wrapping ErrBadInput): an unknown id, a replica, an id listed
// twice, and leaving masters that own slots when no master would remain.
// No leaving master, or none with slots, is an empty plan.
func Drain(masters []Master, leaving []string) ([]Move, error) {
	c, err := load(masters)
	if err != nil {
		return nil, err
	}
	out, err := c.findAll("leaving master", leaving)
	if err != nil {
		return nil, err
	}
	isOut := map[int]bool{}
	givers, gives, total := []int(nil), []int(nil), 0
	for _, i := range out {
		isOut[i] = true
	}
	for i := range c.ms { // address order
		if isOut[i] && c.count(i) > 0 {
			givers = append(givers, i)
			gives = append(gives, c.count(i))
			total += c.count(i)
		}
	}
	if total == 0 {
		return nil, nil
	}
	var takers []int
	for i := range c.ms {
		if !isOut[i] {
			takers = append(takers, i)
		}
	}
	if len(takers) == 0 {
		names := make([]string, len(givers))
		for k, i := range givers {
			names[k] = c.ms[i].String()
		}
		return nil, badInput("no master would remain to take the %d slots of %s", total, strings.Join(names, ", "))
	}
	needs := waterFill(c, takers, nil, total, false)
	sortByCount(c, takers, needs)
	return c.spread(givers, gives, takers, needs), nil
}

// Fill plans giving the joining masters (ids; usually new, empty ones)
// their share of the slots, as `redis-cli --cluster rebalance
// --cluster-use-empty-masters` would after `add-node`, but restricted so
// that slots only move into the joining masters:
//
//   - Every master with slots and every joining master should end with
//     total/k slots (k of them), the remainder one more each: first the
//     non-joining masters with most slots, so that as few slots as possible
//     move, then the joining ones with most. Empty masters not joining are
//     left alone.
//   - A joining master below its target takes the difference (one that
//     already holds more gives nothing, so running Fill again after an
//     interrupted fill just completes it); the slots come one at a time
//     from the non-joining master that has most at that point (ties by
//     address), never taking one below its own target, which evens the
//     givers out as much as the takers allow.
//
// With equal-weight masters that were even before, every master ends
// within 1 slot of every other (Rebalance's rounding can leave 2).
// The moves come as runs: joining masters, fewest slots first, each take
// their share from the givers (address order), lowest slots first.
//
// Errors (all wrapping ErrBadInput): an unknown id, a replica, an id listed
// twice. No joining master, or no slot anywhere, is an empty plan.
func Fill(masters []Master, joining []string) ([]Move, error) {
	c, err := load(masters)
	if err != nil {
		return nil, err
	}
	in, err := c.findAll("joining master", joining)
	if err != nil {
		return nil, err
	}
	isIn := map[int]bool{}
	for _, i := range in {
		isIn[i] = true
	}
	var givers, takers []int
	total := 0
	for i := range c.ms {
		switch {
		case isIn[i]:
			takers = append(takers, i)
		case c.count(i) > 0:
			givers = append(givers, i)
		default:
			continue
		}
		total += c.count(i)
	}
	if len(takers) == 0 || len(givers) == 0 {
		return nil, nil
	}
	k := len(givers) + len(takers)
	base, extra := total/k, total%k
	// Who gets the remainder: givers with most slots, then takers with most.
	ranked := append(byCountDesc(c, givers), byCountDesc(c, takers)...)
	target := map[int]int{}
	for r, i := range ranked {
		target[i] = base
		if r < extra {
			target[i]++
		}
	}
	wants := make([]int, len(takers))
	want := 0
	for t, i := range takers {
		wants[t] = max(0, target[i]-c.count(i))
		want += wants[t]
	}
	surplus := make([]int, len(givers))
	spare := 0
	for g, i := range givers {
		surplus[g] = max(0, c.count(i)-target[i])
		spare += surplus[g]
	}
	// spare < want only when a joining master already holds more than its
	// target (it gives nothing back): the others then get what the givers
	// can spare above their own targets, fewest first.
	n := min(want, spare)
	if n == 0 {
		return nil, nil
	}
	gives := waterFill(c, givers, surplus, n, true)
	needs := waterFill(c, takers, wants, n, false)
	sortByCount(c, takers, needs)
	return c.spread(givers, gives, takers, needs), nil
}

// waterFill shares n slots among the masters ms one at a time: each goes to
// (taking) the master with fewest slots at that point, or comes from
// (giving) the one with most; ties go to the earlier in ms. A master's share
// never exceeds its cap (caps nil: no limit); n must not exceed their sum.
// It returns each master's share, in ms order. O(n*len(ms)), n <= 16384.
func waterFill(c *cluster, ms, caps []int, n int, giving bool) []int {
	share := make([]int, len(ms))
	level := func(k int) int {
		if giving {
			return -(c.count(ms[k]) - share[k])
		}
		return c.count(ms[k]) + share[k]
	}
	for ; n > 0; n-- {
		best := -1
		for k := range ms {
			if (caps == nil || share[k] < caps[k]) && (best < 0 || level(k) < level(best)) {
				best = k
			}
		}
		share[best]++
	}
	return share
}

// byCountDesc returns ms sorted by slot count, most first, ties keeping
// their (address) order.
func byCountDesc(c *cluster, ms []int) []int {
	out := append([]int(nil), ms...)
	sort.SliceStable(out, func(a, b int) bool { return c.count(out[a]) > c.count(out[b]) })
	return out
}

// sortByCount sorts the takers (and their needs with them) by slot count,
// fewest first, ties keeping their order.
func sortByCount(c *cluster, takers, needs []int) {
	idx := make([]int, len(takers))
	for k := range idx {
		idx[k] = k
	}
	sort.SliceStable(idx, func(a, b int) bool { return c.count(takers[idx[a]]) < c.count(takers[idx[b]]) })
	t2, n2 := make([]int, len(takers)), make([]int, len(needs))
	for k, j := range idx {
		t2[k], n2[k] = takers[j], needs[j]
	}
	copy(takers, t2)
	copy(needs, n2)
}

// spread plans the moves: the takers, in order, each take their need from
// the givers' lowest slots, giver after giver, each giver giving its share.
// The shares and needs have the same sum.
func (c *cluster) spread(givers, gives, takers, needs []int) []Move {
	var moves []Move
	g := 0
	for t, to := range takers {
		for need := needs[t]; need > 0; {
			for gives[g] == 0 {
				g++
			}
			k := min(need, gives[g])
			moves = c.give(moves, givers[g], to, k)
			gives[g] -= k
			need -= k
		}
	}
	return moves
}
