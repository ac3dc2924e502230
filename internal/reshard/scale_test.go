package reshard

import (
	"testing"
)

// sixMasters is the layout `redis-cli --cluster create` makes for 6.
func sixMasters() []Master {
	return []Master{m(7001, 0, 2730), m(7002, 2731, 5460), m(7003, 5461, 8191),
		m(7004, 8192, 10922), m(7005, 10923, 13652), m(7006, 13653, 16383)}
}

func TestDrainSixToThree(t *testing.T) {
	ms := sixMasters()
	moves, err := Drain(ms, []string{id(7004), id(7005), id(7006)})
	if err != nil {
		t.Fatal(err)
	}
	counts := checkPlan(t, ms, moves)
	if len(moves) != 8192 {
		t.Errorf("%d moves, want the 8192 slots of 7004-7006", len(moves))
	}
	if counts[7004]+counts[7005]+counts[7006] != 0 {
		t.Errorf("leaving masters keep slots: %v", counts)
	}
	if d := spread(counts, 7001, 7002, 7003); d > 1 {
		t.Errorf("remaining masters %v differ by %d slots, want <= 1", counts, d)
	}
	for _, mv := range moves {
		if mv.To == id(7004) || mv.To == id(7005) || mv.To == id(7006) {
			t.Fatalf("move %v goes to a leaving master", mv)
		}
	}
}

// One of four equal masters leaves: 4096 slots to three, 1366 to the first
// (address order breaks the tie), each taking a run of the leaving slots.
func TestDrainOneOfFour(t *testing.T) {
	ms := []Master{m(7001, 0, 4095), m(7002, 4096, 8191), m(7003, 8192, 12287), m(7004, 12288, 16383)}
	moves, err := Drain(ms, []string{id(7004)})
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, ms, moves)
	for to, want := range map[int]string{7001: "12288-13653", 7002: "13654-15018", 7003: "15019-16383"} {
		if got := movedFrom(moves, 7004, to); got != want {
			t.Errorf("7004 gives %d %s, want %s", to, got, want)
		}
	}
}

// Fewest slots first: an empty master that stays (a node replacing the
// leaving one) takes the leaving master's slots before the full ones.
func TestDrainFillsEmptyMastersFirst(t *testing.T) {
	ms := append(threeMasters(), m(7004))
	moves, err := Drain(ms, []string{id(7001)})
	if err != nil {
		t.Fatal(err)
	}
	counts := checkPlan(t, ms, moves)
	if counts[7004] != 5461 || counts[7002] != 5462 || counts[7003] != 5461 || counts[7001] != 0 {
		t.Errorf("counts %v, want 7004 to take all of 7001's 5461", counts)
	}
}

func TestDrainUnevenRemaining(t *testing.T) {
	// 7002 is low: it gets more until it meets the others.
	ms := []Master{m(7001, 0, 6999), m(7002, 7000, 7999), m(7003, 8000, 14999), m(7004, 15000, 16383)}
	moves, err := Drain(ms, []string{id(7004)})
	if err != nil {
		t.Fatal(err)
	}
	counts := checkPlan(t, ms, moves)
	if counts[7002] != 2384 || counts[7001] != 7000 || counts[7003] != 7000 {
		t.Errorf("counts %v, want all 1384 slots of 7004 to 7002", counts)
	}
}

func TestDrainNothingToDo(t *testing.T) {
	ms := append(threeMasters(), m(7004))
	for _, leaving := range [][]string{nil, {id(7004)}} {
		moves, err := Drain(ms, leaving)
		if err != nil || moves != nil {
			t.Errorf("leaving %v: %d moves, err %v; want none", leaving, len(moves), err)
		}
	}
}

func TestDrainBadInput(t *testing.T) {
	ms := threeMasters()
	ms[2] = withReplica(ms[2], 7006)
	for _, tc := range []struct {
		name    string
		leaving []string
		want    []string
	}{
		{"every master", []string{id(7001), id(7002), id(7003)}, []string{"no master would remain", addr(7001), addr(7003)}},
		{"unknown", []string{"f00d"}, []string{"leaving", "f00d"}},
		{"replica", []string{id(7006)}, []string{addr(7006), "replica of", addr(7003)}},
		{"twice", []string{id(7001), id(7001)}, []string{addr(7001), "twice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			moves, err := Drain(ms, tc.leaving)
			if moves != nil {
				t.Errorf("%d moves, want none", len(moves))
			}
			wantBadInput(t, err, tc.want...)
		})
	}
}

func TestFillThreeToSix(t *testing.T) {
	ms := append(threeMasters(), m(7004), m(7005), m(7006))
	joining := []string{id(7004), id(7005), id(7006)}
	moves, err := Fill(ms, joining)
	if err != nil {
		t.Fatal(err)
	}
	counts := checkPlan(t, ms, moves)
	if d := spread(counts, 7001, 7002, 7003, 7004, 7005, 7006); d > 1 {
		t.Errorf("counts %v differ by %d, want <= 1", counts, d)
	}
	// Fewest moves: 16384 = 6*2730 + 4, the 4 extra slots stay on the
	// givers (7002 first, it has most) and one joining master.
	if len(moves) != 8191 {
		t.Errorf("%d moves, want 8191", len(moves))
	}
	for _, mv := range moves {
		if mv.To != id(7004) && mv.To != id(7005) && mv.To != id(7006) {
			t.Fatalf("move %v goes to a master that is not joining", mv)
		}
	}
	// Interrupted half way, a second Fill completes it to the same counts;
	// after that there is nothing left to do.
	mid, err := Apply(ms, moves[:len(moves)/2])
	if err != nil {
		t.Fatal(err)
	}
	rest, err := Fill(mid, joining)
	if err != nil {
		t.Fatal(err)
	}
	again := checkPlan(t, mid, rest)
	if d := spread(again, 7001, 7002, 7003, 7004, 7005, 7006); d > 1 || len(rest) != len(moves)-len(moves)/2 {
		t.Errorf("resumed: %d moves, counts %v", len(rest), again)
	}
	done, err := Apply(mid, rest)
	if err != nil {
		t.Fatal(err)
	}
	if more, err := Fill(done, joining); err != nil || more != nil {
		t.Errorf("Fill on a filled cluster: %d moves, err %v; want none", len(more), err)
	}
}

func TestFillThreeToFour(t *testing.T) {
	ms := append(threeMasters(), m(7004))
	moves, err := Fill(ms, []string{id(7004)})
	if err != nil {
		t.Fatal(err)
	}
	counts := checkPlan(t, ms, moves)
	for _, p := range []int{7001, 7002, 7003, 7004} {
		if counts[p] != 4096 {
			t.Errorf("%d: %d slots, want 4096 (%v)", p, counts[p], counts)
		}
	}
	// Givers in address order, each its lowest slots.
	for from, want := range map[int]string{7001: "0-1364", 7002: "5461-6826", 7003: "10923-12287"} {
		if got := movedFrom(moves, from, 7004); got != want {
			t.Errorf("%d gives %s, want %s", from, got, want)
		}
	}
}

// Only moves into the joining master: an under-full master that is not
// joining gets nothing, and the joining one takes from the fullest.
func TestFillTakesFromTheFullest(t *testing.T) {
	ms := []Master{m(7001, 0, 7999), m(7002, 8000, 15999), m(7003, 16000, 16383), m(7004)}
	moves, err := Fill(ms, []string{id(7004)})
	if err != nil {
		t.Fatal(err)
	}
	counts := checkPlan(t, ms, moves)
	if counts[7004] != 4096 || counts[7001] != 5952 || counts[7002] != 5952 || counts[7003] != 384 {
		t.Errorf("counts %v, want 7004 4096 taken evenly from 7001 and 7002", counts)
	}
}

func TestFillLeavesOtherEmptyMastersAlone(t *testing.T) {
	ms := append(threeMasters(), m(7004), m(7005))
	moves, err := Fill(ms, []string{id(7005)})
	if err != nil {
		t.Fatal(err)
	}
	counts := checkPlan(t, ms, moves)
	if counts[7004] != 0 || counts[7005] != 4096 {
		t.Errorf("counts %v, want 7005 4096 and 7004 untouched", counts)
	}
}

func TestFillBadInput(t *testing.T) {
	ms := append(threeMasters(), m(7004))
	ms[0] = withReplica(ms[0], 7005)
	for _, tc := range []struct {
		name    string
		joining []string
		want    []string
	}{
		{"unknown", []string{"beef"}, []string{"joining", "beef"}},
		{"replica", []string{id(7005)}, []string{addr(7005), "replica of", addr(7001)}},
		{"twice", []string{id(7004), id(7004)}, []string{addr(7004), "twice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			moves, err := Fill(ms, tc.joining)
			if moves != nil {
				t.Errorf("%d moves, want none", len(moves))
			}
			wantBadInput(t, err, tc.want...)
		})
	}
}

// Takers in order of fewest slots: 7003 (2384) takes the lowest of 7004's
// slots, 2616 to reach 7002's 5000 plus half of the last 384; 7002 the rest.
func TestDrainFewestFirst(t *testing.T) {
	ms := []Master{m(7001, 0, 5999), m(7002, 6000, 10999), m(7003, 11000, 13383), m(7004, 13384, 16383)}
	moves, err := Drain(ms, []string{id(7004)})
	if err != nil {
		t.Fatal(err)
	}
	counts := checkPlan(t, ms, moves)
	if counts[7001] != 6000 || counts[7002] != 5192 || counts[7003] != 5192 {
		t.Errorf("counts %v", counts)
	}
	if a, b := movedFrom(moves, 7004, 7003), movedFrom(moves, 7004, 7002); a != "13384-16191" || b != "16192-16383" {
		t.Errorf("7003 takes %s (want 13384-16191), 7002 %s (want 16192-16383)", a, b)
	}
}
