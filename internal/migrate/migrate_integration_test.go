package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/topology"
)

// Test 1: 1000 slots holding a share of 20,000 keys move from one master
// to another; afterwards the cluster is as healthy as before, with every
// key where a client finds it.
func TestMigrateRange(t *testing.T) {
	c := startCluster(t, 3, 0)
	data := c.fill(20000)
	before := c.dbsize()
	src := c.ownerOf(0)
	dst := c.other(src.ID)
	var log bytes.Buffer
	ctx := testCtx(t, 60*time.Second)
	start := time.Now()
	res, err := Migrate(ctx, c.addrs, c.conn, rangeMoves(0, 999, src.ID, dst.ID), Options{Log: &log})
	if err != nil {
		t.Fatalf("migrate: %v\nlog:\n%s", err, log.String())
	}
	t.Logf("migrate 1000 slots: %v (%v)", res, time.Since(start))
	if len(res.Moves) != 1000 {
		t.Errorf("%d moves done, want 1000", len(res.Moves))
	}
	c.assertAgreed()
	for _, m := range c.masters() {
		switch m.ID {
		case src.ID:
			if got := topology.FormatRanges(topology.MergeRanges(m.Slots)); got != "1000-5460" {
				t.Errorf("source owns %s, want 1000-5460", got)
			}
		case dst.ID:
			if !m.Owns(0) || !m.Owns(999) {
				t.Errorf("target owns %s, want 0-999 too", topology.FormatRanges(m.Slots))
			}
		}
	}
	if after := c.dbsize(); after != before {
		t.Errorf("key count %d after, %d before", after, before)
	}
	if res.Keys == 0 {
		t.Errorf("result counts no key moved")
	}
	c.assertData(data)
}

// workload writes (new keys and overwrites) and reads through a cluster
// client, each worker alone on its own keys, so that the last acknowledged
// value of every key is known and every read after it must return it.
type workload struct {
	c       *tc
	workers int
	// slots are where the new keys go, and which seed keys are used.
	slots   []int
	mu      sync.Mutex
	acked   map[string]string // last acknowledged value per key
	unsure  map[string]string // a write that was never acknowledged: either value may be there
	stats   struct{ writes, reads, nilReads, stale, errs, during, created atomic.Int64 }
	running atomic.Bool // the migration is under way
}

// newWorkload works on the seed keys in slots first..last and creates its
// new keys there, so that every operation meets the migration.
func newWorkload(c *tc, workers int, seed map[string]string, first, last int) *workload {
	w := &workload{c: c, workers: workers, acked: map[string]string{}, unsure: map[string]string{}}
	for k, v := range seed {
		if s := topology.HashSlot(k); s >= first && s <= last {
			w.acked[k] = v
		}
	}
	for s := first; s <= last; s++ {
		w.slots = append(w.slots, s)
	}
	return w
}

// run starts the workers; they stop when stop is closed, after maxOps each,
// or when ctx ends. It returns a wait func.
func (w *workload) run(ctx context.Context, stop <-chan struct{}, maxOps int) func() {
	var wg sync.WaitGroup
	for id := range w.workers {
		// Each worker owns the seed keys key:<i> with i%workers == id, and
		// the new keys it creates.
		var mine []string
		w.mu.Lock()
		for k := range w.acked {
			var i int
			if _, err := fmt.Sscanf(k, "key:%d", &i); err == nil && i%w.workers == id {
				mine = append(mine, k)
			}
		}
		w.mu.Unlock()
		sort.Strings(mine)
		wg.Go(func() { w.worker(ctx, stop, id, mine, maxOps) })
	}
	return wg.Wait
}

func (w *workload) worker(ctx context.Context, stop <-chan struct{}, id int, mine []string, maxOps int) {
	rng := rand.New(rand.NewPCG(uint64(id), 42))
	last := map[string]string{}
	w.mu.Lock()
	for _, k := range mine {
		last[k] = w.acked[k]
	}
	w.mu.Unlock()
	for op := 0; op < maxOps; op++ {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		if w.running.Load() {
			w.stats.during.Add(1)
		}
		switch r := rng.IntN(10); {
		case r < 3: // new key
			k := fmt.Sprintf("new:{%s}:%d:%d", topology.KeyForSlot(w.slots[rng.IntN(len(w.slots))]), id, op)
			if w.write(ctx, k, value(op, id), last) {
				w.stats.created.Add(1)
			}
			mine = append(mine, k)
		case r < 6: // overwrite
			k := mine[rng.IntN(len(mine))]
			w.write(ctx, k, value(op, id+1000), last)
		default: // read a key whose last write was acknowledged
			k := mine[rng.IntN(len(mine))]
			want, ok := last[k]
			if !ok {
				continue
			}
			got, err := w.c.cc.Get(ctx, k).Result()
			w.stats.reads.Add(1)
			switch {
			case errors.Is(err, redis.Nil):
				w.stats.nilReads.Add(1)
			case err != nil:
				w.stats.errs.Add(1)
			case got != want:
				w.stats.stale.Add(1)
			}
		}
	}
}

// write sets k to v, retrying the same value until it is acknowledged
// (a retry of an applied SET changes nothing), within a bounded number of
// attempts; a write never acknowledged leaves k unsure. It reports
// whether the write was acknowledged.
func (w *workload) write(ctx context.Context, k, v string, last map[string]string) bool {
	b := poll.Backoff{Min: time.Millisecond, Max: 50 * time.Millisecond}
	for range 50 {
		err := w.c.cc.Set(ctx, k, v, 0).Err()
		if err == nil {
			w.stats.writes.Add(1)
			last[k] = v
			w.mu.Lock()
			w.acked[k] = v
			delete(w.unsure, k)
			w.mu.Unlock()
			return true
		}
		w.stats.errs.Add(1)
		if b.Wait(ctx) != nil {
			break
		}
	}
	delete(last, k)
	w.mu.Lock()
	w.unsure[k] = v
	w.mu.Unlock()
	return false
}

// lost reads every acknowledged key back and counts those that do not
// hold their last acknowledged value (or, if a later write was never
// acknowledged, that value).
func (w *workload) lost(t *testing.T) (lost int, total int) {
	t.Helper()
	ctx := testCtx(t, 60*time.Second)
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make([]string, 0, len(w.acked))
	for k := range w.acked {
		keys = append(keys, k)
	}
	for i := 0; i < len(keys); i += 1000 {
		chunk := keys[i:min(i+1000, len(keys))]
		pipe := w.c.cc.Pipeline()
		cmds := make([]*redis.StringCmd, len(chunk))
		for j, k := range chunk {
			cmds[j] = pipe.Get(ctx, k)
		}
		_, _ = pipe.Exec(ctx)
		for j, cmd := range cmds {
			k := chunk[j]
			got, err := cmd.Result()
			if err == nil && (got == w.acked[k] || got == w.unsure[k]) {
				continue
			}
			if lost++; lost <= 5 {
				t.Errorf("key %s: got %.20q, %v; last acknowledged %.20q", k, got, err, w.acked[k])
			}
		}
	}
	return lost, len(keys)
}

// Test 2: no acknowledged write is lost and no read of an acknowledged key
// returns nil while 2000 slots move under a continuous read/write load on
// exactly those slots (8 workers: new keys, overwrites, reads).
func TestMigrateZeroLossUnderLoad(t *testing.T) {
	c := startCluster(t, 3, 0)
	seed := c.fill(20000)
	before := c.dbsize()
	src := c.ownerOf(0)
	dst := c.other(src.ID)
	w := newWorkload(c, 8, seed, 0, 1999)
	ctx := testCtx(t, 90*time.Second)
	stop := make(chan struct{})
	wait := w.run(ctx, stop, 200000)
	// Let the workers warm up (their cluster clients load the slot map)
	// before the migration starts: wait until some writes are acknowledged.
	b := poll.Backoff{Min: time.Millisecond, Max: 20 * time.Millisecond}
	for w.stats.writes.Load() < 500 {
		if b.Wait(ctx) != nil {
			t.Fatal("workload never got going")
		}
	}
	w.running.Store(true)
	res, err := Migrate(ctx, c.addrs, c.conn, rangeMoves(0, 1999, src.ID, dst.ID), Options{})
	w.running.Store(false)
	// Keep the load on a little after the return: the clients now follow
	// MOVED to the new owners.
	after := w.stats.writes.Load()
	for w.stats.writes.Load() < after+500 {
		if b.Wait(ctx) != nil {
			break
		}
	}
	close(stop)
	wait()
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	t.Logf("migrate: %v; workload: %d acknowledged writes, %d reads, %d ops during the migration, %d client errors (retried)",
		res, w.stats.writes.Load(), w.stats.reads.Load(), w.stats.during.Load(), w.stats.errs.Load())
	if w.stats.during.Load() < 2000 {
		t.Errorf("only %d operations ran during the migration: the test did not exercise it", w.stats.during.Load())
	}
	c.assertAgreed()
	lost, total := w.lost(t)
	if n := w.stats.nilReads.Load(); n != 0 {
		t.Errorf("%d reads of an acknowledged key returned nil (want zero)", n)
	}
	if n := w.stats.stale.Load(); n != 0 {
		t.Errorf("%d reads of an acknowledged key returned an older value (want zero)", n)
	}
	if lost != 0 {
		t.Errorf("%d of %d acknowledged keys lost or wrong after the migration (want zero)", lost, total)
	}
	if got, want := c.dbsize(), before+w.stats.created.Load(); got < want || got > want+int64(len(w.unsure)) {
		t.Errorf("%d keys in the cluster, want %d (%d before, %d created; %d writes never acknowledged)", got, want, before, w.stats.created.Load(), len(w.unsure))
	}
	t.Logf("zero loss: %d acknowledged keys all read back with their last acknowledged value; 0 nil reads, 0 stale reads", total)
}

// Replicas are never sent SETSLOT: they learn the new owners from the
// targets' broadcasts and gossip, which is what the one broadcast per
// chunk (see finalise) and the waves rest on. Moves in both directions
// between two masters, plus a third, on a cluster with a replica each:
// every node, replicas included, must agree when Migrate returns.
func TestMigrateWithReplicasBothWays(t *testing.T) {
	c := startCluster(t, 6, 1)
	data := c.fill(10000)
	before := c.dbsize()
	owner := func(slot int) string { return c.ownerOf(slot).ID }
	a, b := owner(0), owner(6000)
	third := c.other(a, b).ID
	var moves []Move
	moves = append(moves, rangeMoves(0, 799, a, b)...)           // a gives to b
	moves = append(moves, rangeMoves(6000, 6799, b, a)...)       // b gives to a
	moves = append(moves, rangeMoves(12000, 12399, third, b)...) // the third gives to b
	ctx := testCtx(t, 90*time.Second)
	res, err := Migrate(ctx, c.addrs, c.conn, moves, Options{})
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	t.Logf("migrate both ways with replicas: %v", res)
	if len(res.Moves) != len(moves) {
		t.Errorf("%d moves done, want %d", len(res.Moves), len(moves))
	}
	c.assertAgreed() // every node: the 3 replicas too
	vs, _ := c.views()
	for _, addr := range c.addrs {
		m := topology.SlotOwners(vs[addr])
		if m[0] != b || m[799] != b || m[6000] != a || m[6799] != a || m[12000] != b || m[12399] != b {
			t.Errorf("%s sees owners 0:%.8s 6000:%.8s 12000:%.8s, want %.8s %.8s %.8s", addr, m[0], m[6000], m[12000], b, a, b)
		}
	}
	if after := c.dbsize(); after != before {
		t.Errorf("%d keys on the masters after, %d before", after, before)
	}
	c.assertData(data)
}
