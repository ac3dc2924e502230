package reshard

import (
	"math"
	"sort"
	"strings"
)

// Reshard plans moving n slots to the master with id to, taken from the
// masters with ids from (none, or an entry "all", means every master except
// to), as `redis-cli --cluster reshard --cluster-from ... --cluster-to ...
// --cluster-slots n` does:
//
//   - The sources are sorted by how many slots they own, most first (ties
//     by address). Source i gives n*owned_i/owned_total slots, rounded up
//     for the first source and down for the others, computed in float32 as
//     redis-cli does; every source gives its lowest-numbered slots.
//   - That rounding can give fewer than n slots (4 sources of 4096 slots and
//     n=10 give 3+2+2+2 = 9), and redis-cli then moves only those. Reshard
//     keeps redis-cli's table and tops it up to exactly n: it walks the
//     sources again in the same order, one more slot (the next-lowest) from
//     each, until n slots are planned. A source therefore always gives a
//     prefix of its slots, and the counts differ from redis-cli's only by
//     the shortfall, at most one per source.
//
// The moves are grouped by source in that order, slots ascending.
//
// Errors (all wrapping ErrBadInput): an unknown id, a replica as source or
// target, to among the sources (redis-cli skips it with a message; here it
// is refused, so that `--from X --to X` changes nothing), a source listed
// twice, n < 1, and n larger than the sources own.
func Reshard(masters []Master, from []string, to string, n int) ([]Move, error) {
	c, err := load(masters)
	if err != nil {
		return nil, err
	}
	t, err := c.find("target", to)
	if err != nil {
		return nil, err
	}
	srcs, err := c.sources(from, t)
	if err != nil {
		return nil, err
	}
	if n < 1 {
		return nil, badInput("slot count %d: must be at least 1", n)
	}
	owned := 0
	var names []string
	for _, i := range srcs {
		owned += c.count(i)
		names = append(names, c.ms[i].String())
	}
	if n > owned {
		return nil, badInput("cannot move %d slots: the sources (%s) own only %d", n, strings.Join(names, ", "), owned)
	}
	counts := c.reshardTable(srcs, n)
	// Top up redis-cli's rounding shortfall; bounded because n <= owned.
	for planned := sum(counts); planned < n; {
		for k, i := range srcs {
			if planned < n && counts[k] < c.count(i) {
				counts[k]++
				planned++
			}
		}
	}
	var moves []Move
	for k, i := range srcs {
		moves = c.give(moves, i, t, counts[k])
	}
	return moves, nil
}

// sources resolves Reshard's from list, sorted as redis-cli sorts them: by
// owned slot count, most first; ties keep address order.
func (c *cluster) sources(from []string, target int) ([]int, error) {
	all := len(from) == 0
	var ids []string
	for _, id := range from {
		if strings.EqualFold(id, "all") {
			all = true // redis-cli: "all" anywhere in the list means all
		} else {
			ids = append(ids, id)
		}
	}
	var srcs []int
	if all {
		for i := range c.ms {
			if i != target {
				srcs = append(srcs, i)
			}
		}
		if len(srcs) == 0 {
			return nil, badInput("no source: the target %s is the only master", c.ms[target])
		}
	} else {
		var err error
		if srcs, err = c.findAll("source", ids); err != nil {
			return nil, err
		}
		for _, i := range srcs {
			if i == target {
				return nil, badInput("source %s is also the target: a master cannot give slots to itself", c.ms[i])
			}
		}
	}
	sort.SliceStable(srcs, func(a, b int) bool {
		if ca, cb := c.count(srcs[a]), c.count(srcs[b]); ca != cb {
			return ca > cb
		}
		return srcs[a] < srcs[b]
	})
	return srcs, nil
}

// reshardTable is clusterManagerComputeReshardTable: how many slots each of
// srcs (sorted) gives for n slots in all. Its float32 arithmetic and
// rounding are redis-cli's; the total can fall short of n.
func (c *cluster) reshardTable(srcs []int, n int) []int {
	total := 0
	for _, i := range srcs {
		total += c.count(i)
	}
	counts := make([]int, len(srcs))
	planned := 0
	for k, i := range srcs {
		share := float32(n) / float32(total) * float32(c.count(i))
		if k == 0 {
			share = float32(math.Ceil(float64(share)))
		} else {
			share = float32(math.Floor(float64(share)))
		}
		give := min(int(share), c.count(i), n-planned)
		counts[k] = give
		planned += give
	}
	return counts
}

func sum(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}
