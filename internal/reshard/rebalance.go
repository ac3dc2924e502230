package reshard

import (
	"math"
	"sort"
)

// DefaultThreshold is redis-cli's default --cluster-threshold, in percent.
const DefaultThreshold = 2.0

// RebalanceOptions are `redis-cli --cluster rebalance`'s options.
type RebalanceOptions struct {
	// Weights by node id (compared case-insensitively); a master not
	// listed weighs 1. Weight 0 empties a master. redis-cli matches an id
	// prefix; here the id must be whole (the CLI resolves names to ids).
	Weights map[string]float64
	// UseEmptyMasters includes masters that own no slot (they get their
	// share); without it they are left out, as is any weight given to them.
	UseEmptyMasters bool
	// Threshold in percent: nothing moves unless some master's slot count
	// is off its expected count by more than this. 0 means
	// DefaultThreshold. (redis-cli's --cluster-threshold 0 is different: it
	// disables the test, which then never passes, so redis-cli never
	// rebalances. A CLI that wants that must not call Rebalance.)
	Threshold float64
}

// Rebalance plans what `redis-cli --cluster rebalance` moves:
//
//   - The involved masters are those with slots, plus the empty ones with
//     UseEmptyMasters. Each is expected to own int(total/W*w) slots, where
//     w is its weight, W the sum of the weights and total the slots the
//     masters own (16384 in a covered cluster, which is redis-cli's
//     constant), all in float32 as redis-cli computes it.
//   - Threshold test: a master with slots is over the threshold when
//     |100 - 100*expected/owned| > Threshold; an empty one when it is
//     expected to get more than 1 slot. When no master is over, the plan is
//     empty (redis-cli: "No rebalancing needed").
//   - balance = owned - expected. Rounding leaves a positive sum, which is
//     handed out one slot at a time to the masters whose balance is <= 0,
//     in address order, so that givers and takers match. redis-cli also
//     hands it to an empty master of weight 0 (with UseEmptyMasters), which
//     then owns a slot it was told to own none of; here weight 0 gets none.
//   - Masters are sorted by balance (ties by address); slots go from the
//     one that has most to give to the one that needs most, min(give, need)
//     at a time, each time the giver's lowest-numbered slots, until every
//     balance is 0. The moves are in that order.
//
// redis-cli's rounding can leave equal-weight masters up to 2 slots apart
// (3 full masters + 3 empty: 2730..2732); Fill does not.
//
// Errors (all wrapping ErrBadInput): a weight for an unknown id or a
// replica, a negative or non-finite weight, a negative or non-finite
// threshold, and weights that are all 0.
func Rebalance(masters []Master, o RebalanceOptions) ([]Move, error) {
	c, err := load(masters)
	if err != nil {
		return nil, err
	}
	threshold := o.Threshold
	if threshold == 0 {
		threshold = DefaultThreshold
	}
	if threshold < 0 || math.IsNaN(threshold) || math.IsInf(threshold, 0) {
		return nil, badInput("threshold %v%%: must be a positive number", o.Threshold)
	}
	weight := make([]float32, len(c.ms))
	for i := range weight {
		weight[i] = 1
	}
	for id, w := range o.Weights {
		i, err := c.find("weight for", id)
		if err != nil {
			return nil, err
		}
		if w < 0 || math.IsNaN(w) || math.IsInf(w, 0) {
			return nil, badInput("weight %v for %s: must be a number, 0 or more", w, c.ms[i])
		}
		weight[i] = float32(w)
	}

	var involved []int
	var totalWeight float32
	total := 0
	for i := range c.ms {
		if c.count(i) == 0 && !o.UseEmptyMasters {
			continue
		}
		involved = append(involved, i)
		totalWeight += weight[i]
		total += c.count(i)
	}
	if len(involved) == 0 || total == 0 {
		return nil, nil
	}
	if totalWeight == 0 {
		return nil, badInput("every master has weight 0: there is no master to give the slots to")
	}

	balance := make([]int, len(c.ms))
	over := false
	limit := float32(threshold) // redis-cli compares in float, too
	sumBalance := 0
	for _, i := range involved {
		expected := int(float32(total) / totalWeight * weight[i])
		owned := c.count(i)
		balance[i] = owned - expected
		sumBalance += balance[i]
		if owned > 0 {
			if float32(math.Abs(100-100*float64(expected)/float64(owned))) > limit {
				over = true
			}
		} else if expected > 1 {
			over = true
		}
	}
	if !over {
		return nil, nil
	}
	// Hand the rounding surplus to the takers. Each pass gives one slot to
	// every master whose balance is <= 0 and weight is not 0; a pass that
	// finds none ends it (redis-cli would spin), and the pairing below then
	// stops early.
	for sumBalance > 0 {
		gave := false
		for _, i := range involved {
			if balance[i] <= 0 && weight[i] > 0 && sumBalance > 0 {
				balance[i]--
				sumBalance--
				gave = true
			}
		}
		if !gave {
			break
		}
	}

	order := append([]int(nil), involved...)
	sort.SliceStable(order, func(a, b int) bool { return balance[order[a]] < balance[order[b]] })
	var moves []Move
	for dst, src := 0, len(order)-1; dst < src; {
		d, s := order[dst], order[src]
		if balance[d] >= 0 || balance[s] <= 0 {
			break // no taker or no giver is left
		}
		k := min(-balance[d], balance[s])
		moves = c.give(moves, s, d, k)
		balance[d] += k
		balance[s] -= k
		if balance[d] == 0 {
			dst++
		}
		if balance[s] == 0 {
			src--
		}
	}
	return moves, nil
}
