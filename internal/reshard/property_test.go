package reshard

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/rcluster/rcluster/internal/topology"
)

// randomCluster makes 1-8 masters (ports 7001...) owning random runs of
// all 16384 slots; some own several runs, some none.
func randomCluster(r *rand.Rand) []Master {
	ms := make([]Master, 1+r.IntN(8))
	for i := range ms {
		ms[i] = m(7001 + i)
	}
	for s := 0; s < topology.SlotCount; {
		end := min(s+r.IntN(3000), topology.SlotCount-1)
		k := r.IntN(len(ms))
		ms[k].Slots = append(ms[k].Slots, topology.SlotRange{Start: s, End: end})
		s = end + 1
	}
	for i := range ms {
		ms[i].Slots = topology.MergeRanges(ms[i].Slots)
	}
	return ms
}

func shuffled(r *rand.Rand, ms []Master) []Master {
	out := slices.Clone(ms)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func pick(r *rand.Rand, ms []Master) (ids []string) {
	for _, x := range ms {
		if r.IntN(2) == 0 {
			ids = append(ids, x.ID)
		}
	}
	return ids
}

// Every planner on random clusters: the moves pass checkPlan (each From owns
// its slot, no slot twice, the total kept), have the planner's shape, and
// the same plan comes out whatever the order of the input.
func TestPlansOnRandomClusters(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 16384))
	for round := 0; round < 150; round++ {
		ms := randomCluster(r)
		owner := map[string]bool{}
		for _, x := range ms {
			owner[x.ID] = true
		}

		// Reshard: exactly n slots, all to the target, all from sources.
		if len(ms) > 1 {
			to := ms[r.IntN(len(ms))].ID
			var from []string
			owned := 0
			for _, id := range pick(r, ms) {
				if id != to {
					from = append(from, id)
				}
			}
			for _, x := range ms {
				if x.ID != to && (len(from) == 0 || slices.Contains(from, x.ID)) {
					owned += x.SlotCount()
				}
			}
			if owned > 0 {
				n := 1 + r.IntN(owned)
				moves, err := Reshard(ms, from, to, n)
				if err != nil {
					t.Fatalf("round %d: Reshard: %v", round, err)
				}
				checkPlan(t, ms, moves)
				if len(moves) != n {
					t.Fatalf("round %d: Reshard %d slots planned %d", round, n, len(moves))
				}
				for _, mv := range moves {
					if mv.To != to || (len(from) > 0 && !slices.Contains(from, mv.From)) {
						t.Fatalf("round %d: move %v: not from a source to the target", round, mv)
					}
				}
				same, _ := Reshard(shuffled(r, ms), from, to, n)
				if !slices.Equal(moves, same) {
					t.Fatalf("round %d: Reshard depends on the input order", round)
				}
			}
		}

		// Rebalance with weights 0-3: applying the plan reaches a fixpoint.
		o := RebalanceOptions{UseEmptyMasters: r.IntN(2) == 0, Weights: map[string]float64{}}
		for _, id := range pick(r, ms) {
			o.Weights[id] = float64(r.IntN(4))
		}
		moves, err := Rebalance(ms, o)
		if err != nil {
			wantBadInput(t, err, "weight 0") // only when every weight drawn is 0
		} else {
			checkPlan(t, ms, moves)
			after, err := Apply(ms, moves)
			if err != nil {
				t.Fatal(err)
			}
			if again, err := Rebalance(after, o); err != nil || len(again) != 0 {
				t.Fatalf("round %d: a second Rebalance plans %d moves (err %v)", round, len(again), err)
			}
			same, _ := Rebalance(shuffled(r, ms), o)
			if !slices.Equal(moves, same) {
				t.Fatalf("round %d: Rebalance depends on the input order", round)
			}
		}

		// Drain: the leaving masters end empty and only they give.
		if leaving := pick(r, ms); len(leaving) < len(ms) {
			moves, err := Drain(ms, leaving)
			if err != nil {
				t.Fatalf("round %d: Drain: %v", round, err)
			}
			counts := checkPlan(t, ms, moves)
			for _, mv := range moves {
				if !slices.Contains(leaving, mv.From) || slices.Contains(leaving, mv.To) {
					t.Fatalf("round %d: Drain move %v", round, mv)
				}
			}
			for _, x := range ms {
				if _, p := splitAddr(x.Addr); slices.Contains(leaving, x.ID) && counts[p] != 0 {
					t.Fatalf("round %d: leaving %s keeps %d slots", round, x, counts[p])
				}
			}
			same, _ := Drain(shuffled(r, ms), leaving)
			if !slices.Equal(moves, same) {
				t.Fatalf("round %d: Drain depends on the input order", round)
			}
		}

		// Fill: only the joining masters take.
		joining := pick(r, ms)
		moves, err = Fill(ms, joining)
		if err != nil {
			t.Fatalf("round %d: Fill: %v", round, err)
		}
		checkPlan(t, ms, moves)
		for _, mv := range moves {
			if !slices.Contains(joining, mv.To) || slices.Contains(joining, mv.From) {
				t.Fatalf("round %d: Fill move %v", round, mv)
			}
		}
		same, _ := Fill(shuffled(r, ms), joining)
		if !slices.Equal(moves, same) {
			t.Fatalf("round %d: Fill depends on the input order", round)
		}
	}
}

// Growing an even cluster by 1-5 empty masters and then shrinking it back
// keeps every master within 1 slot of the others at each step.
func TestFillThenDrainStaysEven(t *testing.T) {
	for masters := 1; masters <= 6; masters++ {
		for added := 1; added <= 5; added++ {
			var ms []Master
			per := topology.SlotCount / masters
			for i := 0; i < masters; i++ {
				end := (i+1)*per - 1
				if i == masters-1 {
					end = topology.SlotCount - 1
				}
				ms = append(ms, m(7001+i, i*per, end))
			}
			var joining []string
			for i := 0; i < added; i++ {
				ms = append(ms, m(7001+masters+i))
				joining = append(joining, id(7001+masters+i))
			}
			moves, err := Fill(ms, joining)
			if err != nil {
				t.Fatal(err)
			}
			counts := checkPlan(t, ms, moves)
			if d := spreadAll(counts); d > 1 {
				t.Fatalf("%d+%d: after Fill %v differ by %d", masters, added, counts, d)
			}
			grown, err := Apply(ms, moves)
			if err != nil {
				t.Fatal(err)
			}
			moves, err = Drain(grown, joining)
			if err != nil {
				t.Fatal(err)
			}
			counts = checkPlan(t, grown, moves)
			for i := 0; i < added; i++ {
				delete(counts, 7001+masters+i)
			}
			if d := spreadAll(counts); d > 1 {
				t.Fatalf("%d+%d: after Drain %v differ by %d", masters, added, counts, d)
			}
		}
	}
}

func spreadAll(counts map[int]int) int {
	var ports []int
	for p := range counts {
		ports = append(ports, p)
	}
	return spread(counts, ports...)
}
