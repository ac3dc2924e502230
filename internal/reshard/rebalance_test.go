package reshard

import (
	"math"
	"strconv"
	"testing"
)

// redis-cli's documented case: add an empty master, rebalance with
// --cluster-use-empty-masters. Every master is expected to own 4096;
// sorted by balance 7004 (-4096) takes from 7002 (+1366) first, then 7003
// and 7001 (+1365 each, address order), each giving its lowest slots.
func TestRebalanceUseEmptyMasters(t *testing.T) {
	ms := append(threeMasters(), m(7004))
	moves, err := Rebalance(ms, RebalanceOptions{UseEmptyMasters: true})
	if err != nil {
		t.Fatal(err)
	}
	counts := checkPlan(t, ms, moves)
	for _, p := range []int{7001, 7002, 7003, 7004} {
		if counts[p] != 4096 {
			t.Errorf("%d has %d slots after, want 4096 (%v)", p, counts[p], counts)
		}
	}
	for from, want := range map[int]string{7002: "5461-6826", 7003: "10923-12287", 7001: "0-1364"} {
		if got := movedFrom(moves, from, 7004); got != want {
			t.Errorf("%d gives %s, want %s", from, got, want)
		}
	}
	if moves[0].From != id(7002) || moves[1366].From != id(7003) || moves[len(moves)-1].From != id(7001) {
		t.Errorf("order: want 7002's moves, then 7003's, then 7001's")
	}

	// Without the flag the empty master is left out (even with a weight),
	// and the three others are balanced: nothing to do.
	moves, err = Rebalance(ms, RebalanceOptions{Weights: map[string]float64{id(7004): 5}})
	if err != nil || len(moves) != 0 {
		t.Errorf("without UseEmptyMasters: %d moves, err %v; want none", len(moves), err)
	}
}

// The threshold test, both sides of 2%: |100 - 100*4096/4170| = 1.77% and
// 4022 -> 1.84% stay; 4180 -> 2.01% (and 4012 -> 2.09%) rebalance.
func TestRebalanceThreshold(t *testing.T) {
	near := []Master{m(7001, 0, 4169), m(7002, 4170, 8191), m(7003, 8192, 12287), m(7004, 12288, 16383)}
	over := []Master{m(7001, 0, 4179), m(7002, 4180, 8191), m(7003, 8192, 12287), m(7004, 12288, 16383)}
	for _, tc := range []struct {
		name      string
		ms        []Master
		threshold float64
		want      int // moves
	}{
		{"1.8% under the default", near, 0, 0},
		{"1.8% under an explicit 2", near, 2, 0},
		{"1.8% over 1.5", near, 1.5, 74},
		{"2.1% over the default", over, 0, 84},
		{"2.1% over an explicit 2", over, 2, 84},
		{"2.1% under 2.5", over, 2.5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			moves, err := Rebalance(tc.ms, RebalanceOptions{Threshold: tc.threshold})
			if err != nil {
				t.Fatal(err)
			}
			counts := checkPlan(t, tc.ms, moves)
			if len(moves) != tc.want {
				t.Fatalf("%d moves, want %d", len(moves), tc.want)
			}
			if tc.want > 0 {
				if counts[7001] != 4096 || counts[7002] != 4096 || movedFrom(moves, 7001, 7002) != "0-"+strconv.Itoa(tc.want-1) {
					t.Errorf("counts %v, 7001 gives %s", counts, movedFrom(moves, 7001, 7002))
				}
			}
		})
	}
}

func TestRebalanceWeights(t *testing.T) {
	two := []Master{m(7001, 0, 8191), m(7002, 8192, 16383)}
	moves, err := Rebalance(two, RebalanceOptions{Weights: map[string]float64{id(7001): 3}})
	if err != nil {
		t.Fatal(err)
	}
	counts := checkPlan(t, two, moves)
	if counts[7001] != 12288 || counts[7002] != 4096 || movedFrom(moves, 7002, 7001) != "8192-12287" {
		t.Errorf("weight 3:1: counts %v, 7002 gives %s", counts, movedFrom(moves, 7002, 7001))
	}

	// Weight 0 empties a master: 7001 (-2731) takes first, then 7002.
	ms := threeMasters()
	moves, err = Rebalance(ms, RebalanceOptions{Weights: map[string]float64{id(7003): 0}})
	if err != nil {
		t.Fatal(err)
	}
	counts = checkPlan(t, ms, moves)
	if counts[7003] != 0 || counts[7001] != 8192 || counts[7002] != 8192 {
		t.Errorf("weight 0: counts %v", counts)
	}
	if a, b := movedFrom(moves, 7003, 7001), movedFrom(moves, 7003, 7002); a != "10923-13653" || b != "13654-16383" {
		t.Errorf("weight 0: 7003 gives 7001 %s, 7002 %s", a, b)
	}

	// Fractional weights, float32 as redis-cli: 16384/2.5*1.5 = 9830.4.
	moves, err = Rebalance(two, RebalanceOptions{Weights: map[string]float64{id(7001): 1.5}})
	if err != nil {
		t.Fatal(err)
	}
	if counts = checkPlan(t, two, moves); counts[7001] != 9831 || counts[7002] != 6553 {
		t.Errorf("weight 1.5:1: counts %v, want 9831 (9830 + the rounding slot) and 6553", counts)
	}
}

// redis-cli's rounding with 3 full masters and 3 empty ones: expected
// int(16384/6) = 2730 each, the 4 leftover slots go to the takers in
// address order (7004 twice), so the givers end at 2730 and 7004 at 2732.
// Fill (scale_test.go) keeps everyone within 1.
func TestRebalanceRoundingLikeRedisCli(t *testing.T) {
	ms := append(threeMasters(), m(7004), m(7005), m(7006))
	moves, err := Rebalance(ms, RebalanceOptions{UseEmptyMasters: true})
	if err != nil {
		t.Fatal(err)
	}
	counts := checkPlan(t, ms, moves)
	want := map[int]int{7001: 2730, 7002: 2730, 7003: 2730, 7004: 2732, 7005: 2731, 7006: 2731}
	for p, w := range want {
		if counts[p] != w {
			t.Errorf("%d: %d slots, want %d (%v)", p, counts[p], w, counts)
		}
	}
}

func TestRebalanceBadInput(t *testing.T) {
	ms := threeMasters()
	ms[1] = withReplica(ms[1], 7005)
	for _, tc := range []struct {
		name string
		o    RebalanceOptions
		want []string
	}{
		{"negative weight", RebalanceOptions{Weights: map[string]float64{id(7002): -1}}, []string{"-1", addr(7002)}},
		{"NaN weight", RebalanceOptions{Weights: map[string]float64{id(7002): math.NaN()}}, []string{"NaN", addr(7002)}},
		{"weight for a replica", RebalanceOptions{Weights: map[string]float64{id(7005): 2}}, []string{addr(7005), "replica of", addr(7002)}},
		{"weight for an unknown id", RebalanceOptions{Weights: map[string]float64{"cafe": 2}}, []string{"cafe", "no master"}},
		{"all weights 0", RebalanceOptions{Weights: map[string]float64{id(7001): 0, id(7002): 0, id(7003): 0}}, []string{"weight 0"}},
		{"negative threshold", RebalanceOptions{Threshold: -1}, []string{"threshold -1"}},
		{"infinite threshold", RebalanceOptions{Threshold: math.Inf(1)}, []string{"threshold"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			moves, err := Rebalance(ms, tc.o)
			if moves != nil {
				t.Errorf("%d moves, want none", len(moves))
			}
			wantBadInput(t, err, tc.want...)
		})
	}
}

// An empty master alone can pass the threshold test: when it is expected to
// get more than 1 slot. Two full masters are within 0.03% of 8190 either
// way; 7003's tiny weight makes it expect int(8191.8*w) slots.
func TestRebalanceEmptyMasterOverThreshold(t *testing.T) {
	ms := []Master{m(7001, 0, 8191), m(7002, 8192, 16383), m(7003)}
	for _, tc := range []struct {
		weight float64
		want   int // slots 7003 gets
	}{
		{0.00015, 0}, // expects 1: not over
		{0.0003, 4},  // expects 2: over; gets 2 + the 2 rounding slots
	} {
		o := RebalanceOptions{UseEmptyMasters: true, Weights: map[string]float64{id(7003): tc.weight}}
		moves, err := Rebalance(ms, o)
		if err != nil {
			t.Fatal(err)
		}
		counts := checkPlan(t, ms, moves)
		if counts[7003] != tc.want {
			t.Errorf("weight %v: 7003 gets %d slots, want %d", tc.weight, counts[7003], tc.want)
		}
		if tc.want > 0 && (movedFrom(moves, 7002, 7003) != "8192-8193" || movedFrom(moves, 7001, 7003) != "0-1") {
			t.Errorf("weight %v: 7002 gives %s, 7001 %s; want 8192-8193 and 0-1", tc.weight, movedFrom(moves, 7002, 7003), movedFrom(moves, 7001, 7003))
		}
	}
}

// The rounding slot goes to the first master in address order whose
// balance is <= 0, here 7001 with balance exactly 0 (expected 5461).
func TestRebalanceRoundingSlotToBalanceZero(t *testing.T) {
	ms := []Master{m(7001, 0, 5460), m(7002, 5461, 10460), m(7003, 10461, 16383)}
	moves, err := Rebalance(ms, RebalanceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	counts := checkPlan(t, ms, moves)
	if counts[7001] != 5462 || counts[7002] != 5461 || counts[7003] != 5461 {
		t.Errorf("counts %v, want 7001 5462 (the rounding slot), 7002 5461, 7003 5461", counts)
	}
}

// redis-cli hands a rounding slot to the first master whose balance is <= 0,
// even an empty one of weight 0 (7000 here); Rebalance skips weight 0, so
// the slot goes to 7001.
func TestRebalanceRoundingSlotNotToWeightZero(t *testing.T) {
	ms := []Master{m(7000), m(7001, 0, 4999), m(7002, 5000, 10922), m(7003, 10923, 16383)}
	moves, err := Rebalance(ms, RebalanceOptions{UseEmptyMasters: true, Weights: map[string]float64{id(7000): 0}})
	if err != nil {
		t.Fatal(err)
	}
	counts := checkPlan(t, ms, moves)
	if counts[7000] != 0 || counts[7001] != 5462 || counts[7002] != 5461 || counts[7003] != 5461 {
		t.Errorf("counts %v, want 7000 0, 7001 5462, 7002 5461, 7003 5461", counts)
	}
}
