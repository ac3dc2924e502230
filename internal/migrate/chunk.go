package migrate

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/topology"
)

// Slots travel in chunks: up to chunkSlots slots with the same source,
// target and step go through each step together, one pipeline per node
// per step, in slot order. Each slot's own steps stay strictly ordered
// (its IMPORTING is answered before its MIGRATING is sent, and so on); what
// the pipelines save is a round trip per slot per step, on the client and
// on the nodes. Measured on 2 vCPUs, 5461 slots with 33,000 keys: one
// goroutine per slot, 16 or 128 at once, took ~2 s with the client using
// 0.9 s of CPU; chunks take ~1.1 s with 0.2 s (then finalise's single
// broadcast per chunk, ~0.8 s).
const chunkSlots = 32

// roundMigrates bounds the MIGRATEs pipelined to a source in one round,
// and roundsInFlight the rounds in flight per source, whatever the number
// of chunks sending from it (see roundSlot). The source runs MIGRATEs one
// after the other, blocking its event loop for each; when the target does
// not answer each takes up to Options.Timeout, so at most 8 of them can
// block a source at once. Two rounds in flight keep the source busy while
// the client reads one and sends the next: 5461 slots took ~0.95 s with 2
// rounds of 4, ~1.15 s with 1 round of 8. After a round with a MIGRATE
// error the chunk's next round sends a single MIGRATE.
const (
	roundMigrates  = 4
	roundsInFlight = 2
)

// maxStuck bounds, per slot, the rounds in a row in which the sending
// node's key count does not fall (a MIGRATE or a read that fails).
const maxStuck = 5

// slotRun is one slot's progress through its chunk.
type slotRun struct {
	p     pair
	left  int64    // keys of the slot on the sending node, last read
	keys  []string // the next batch, last read
	goal  int64    // stop once this many have moved
	sent  []string // the batch in flight
	moved int64
	// batches counts MIGRATEs; stuck the rounds in a row without progress.
	batches, stuck int
	last           error // the last failure while moving keys
	err            error // the slot failed: it takes no further step
}

// run does each pair's step, o.Parallel slots in flight: chunks of up to
// chunkSlots (fewer when Parallel is smaller), Parallel/chunk size chunks
// at once. After the first error (or when ctx ends) it starts no new chunk
// and waits for the ones in flight; the error names the slots that may be
// left open. Results are added to res.
func (e *engine) run(ctx context.Context, res *Result, pairs []pair) error {
	size := min(chunkSlots, e.o.Parallel)
	sem := make(chan struct{}, max(1, e.o.Parallel/size))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	var failed []pair
	failing := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(errs) > 0
	}
launch:
	for _, ch := range chunks(pairs, size) {
		if failing() || ctx.Err() != nil {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break launch
		}
		if failing() || ctx.Err() != nil { // a chunk failed while this one waited
			<-sem
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			runs := e.chunk(ctx, ch)
			mu.Lock()
			defer mu.Unlock()
			for _, r := range runs {
				res.Keys += r.moved
				res.Batches += r.batches
				if r.err != nil {
					errs = append(errs, r.err)
					failed = append(failed, r.p)
					continue
				}
				res.Moves = append(res.Moves, Move{Slot: r.p.slot, From: r.p.src.ID, To: r.p.dst.ID})
			}
		})
	}
	wg.Wait()
	if ctx.Err() == nil {
		e.flush(ctx)
	}
	if ctx.Err() != nil && len(errs) == 0 {
		errs = append(errs, context.Cause(ctx))
	}
	if len(errs) == 0 {
		return nil
	}
	const maxErrs = 2
	var more []string
	for i, err := range errs[1:] {
		if i == maxErrs {
			more = append(more, fmt.Sprintf("and %d more", len(errs)-1-maxErrs))
			break
		}
		more = append(more, err.Error())
	}
	also := ""
	if len(more) > 0 {
		also = "; " + strings.Join(more, "; ")
	}
	open := "none"
	if len(failed) > 0 {
		open = slotList(failed)
	}
	return fmt.Errorf("%w%s (slots possibly left open: %s; Open reports them, Finish or Abort closes them)", errs[0], also, open)
}

// chunks groups pairs with the same source, target and step into chunks
// of at most size, keeping their order.
func chunks(pairs []pair, size int) [][]pair {
	var out [][]pair
	filling := map[string]int{}
	for _, p := range pairs {
		k := p.src.ID + ">" + p.dst.ID + ":" + strconv.Itoa(int(p.step))
		i, ok := filling[k]
		if !ok || len(out[i]) >= size {
			out = append(out, nil)
			i = len(out) - 1
			filling[k] = i
		}
		out[i] = append(out[i], p)
	}
	return out
}

// chunk takes a chunk's slots through their step.
func (e *engine) chunk(ctx context.Context, ps []pair) []*slotRun {
	runs := make([]*slotRun, len(ps))
	for i, p := range ps {
		runs[i] = &slotRun{p: p}
	}
	src, dst := ps[0].src, ps[0].dst
	switch ps[0].step {
	case stepMove, stepHold:
		e.open(ctx, runs, src, dst)
		hold := ps[0].step == stepHold
		e.drain(ctx, runs, src, dst, hold, false)
		if hold {
			for _, r := range live(runs) {
				e.logf("slot %d held open: %s -> %s, %d keys moved", r.p.slot, src.Addr, dst.Addr, r.moved)
			}
			return runs
		}
		e.finalise(ctx, runs, src, dst, true)
	case stepFinalise:
		e.finalise(ctx, runs, src, dst, false)
	case stepReturn:
		e.returnKeys(ctx, runs, src, dst)
	}
	return runs
}

// live are the runs that have not failed.
func live(runs []*slotRun) []*slotRun {
	var out []*slotRun
	for _, r := range runs {
		if r.err == nil {
			out = append(out, r)
		}
	}
	return out
}

// each sends, in one pipeline to addr bounded by the call timeout plus
// extra, the commands cmds gives for each run, then hands each run its
// replies (when the node gave no answer, each reply carries that error).
func (e *engine) each(ctx context.Context, addr string, runs []*slotRun, extra time.Duration, cmds func(r *slotRun) [][]any, done func(r *slotRun, replies []*redis.Cmd)) {
	if len(runs) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, e.conn.CallTimeout()+extra)
	defer cancel()
	pipe := e.client(addr).Pipeline()
	replies := make([][]*redis.Cmd, len(runs))
	for i, r := range runs {
		for _, c := range cmds(r) {
			replies[i] = append(replies[i], pipe.Do(cctx, c...))
		}
	}
	_, _ = pipe.Exec(cctx)
	for i, r := range runs {
		if ctx.Err() != nil {
			r.err = fmt.Errorf("slot %d: %w", r.p.slot, context.Cause(ctx))
			continue
		}
		done(r, replies[i])
	}
}

// setslot sends CLUSTER SETSLOT <slot> args... for each run to addr; a run
// whose reply is an error that ok does not accept fails with it.
func (e *engine) setslot(ctx context.Context, addr string, runs []*slotRun, ok func(error) bool, args ...any) {
	e.each(ctx, addr, runs, 0, func(r *slotRun) [][]any {
		return [][]any{append([]any{"CLUSTER", "SETSLOT", r.p.slot}, args...)}
	}, func(r *slotRun, c []*redis.Cmd) {
		if err := c[0].Err(); err != nil && (ok == nil || !ok(err)) {
			r.err = fmt.Errorf("slot %d: node %s: setslot %s: %w", r.p.slot, addr, strings.ToLower(fmt.Sprint(args[0])), err)
		}
	})
}

// open puts the slots in migration, in the only safe order: IMPORTING on
// the target first, so that the ASK replies the source starts sending
// once it is MIGRATING reach a target that accepts them (trap 3). Both are
// idempotent, so Finish re-opens a half-opened slot the same way.
func (e *engine) open(ctx context.Context, runs []*slotRun, src, dst topology.Node) {
	e.setslot(ctx, dst.Addr, live(runs), nil, "IMPORTING", src.ID)
	e.setslot(ctx, src.Addr, live(runs), nil, "MIGRATING", dst.ID)
}

// countAndKeys are the commands that read a slot's key count and its next
// batch of keys.
func (e *engine) countAndKeys(slot int) [][]any {
	return [][]any{{"CLUSTER", "COUNTKEYSINSLOT", slot}, {"CLUSTER", "GETKEYSINSLOT", slot, e.o.Batch}}
}

// readKeys parses countAndKeys replies.
func readKeys(c []*redis.Cmd) (int64, []string, error) {
	n, err := c[0].Int64()
	if err != nil {
		return 0, nil, err
	}
	keys, err := c[1].StringSlice()
	return n, keys, err
}

// drain moves the slots' keys from `from` to `to` in rounds until `from`
// holds none of them (half: until about half of what it held has moved).
// Each round sends, per slot, one MIGRATE of up to Batch keys and re-reads
// the key count and the next keys in the same round trip: a batch is not
// all-or-nothing (trap 4), only the re-read says what moved. A slot whose
// count does not fall for maxStuck rounds fails. Rounds are bounded: the
// sending node cannot gain keys of a slot while it migrates it (it
// answers ASK for any key it does not hold), so every round that is not
// stuck lowers a count that started finite.
//
// Forward (back false), every MIGRATE has REPLACE. While the slot is
// MIGRATING the source serves every key it still holds, reads and writes
// alike, and answers ASK only for keys it does not hold
// (redis-cluster-ops.md section 3): so for a key on the source, the
// source's copy is the last acknowledged value. The target can hold a
// copy of such a key only after a MIGRATE that applied the RESTORE on the
// target but failed before the source deleted its copy (I/O error or
// timeout, #1765/#2764); that copy is stale, and without REPLACE the retry
// would stop at BUSYKEY for good (DEBUG DIGEST-VALUE, which redis-cli
// compares, is off by default in 7.0). A key a client created on the
// target after an ASK never exists on the source (the source keeps
// answering ASK for it), so REPLACE never overwrites a newer value.
//
// Back (returnKeys: `from` an importing target, `to` the slot's owner),
// the MIGRATE goes without REPLACE, after ASKING, and BUSYKEY means the
// owner has a newer copy (see dropShadowed).
func (e *engine) drain(ctx context.Context, runs []*slotRun, from, to topology.Node, half, back bool) {
	e.each(ctx, from.Addr, live(runs), 0, func(r *slotRun) [][]any { return e.countAndKeys(r.p.slot) }, func(r *slotRun, c []*redis.Cmd) {
		n, keys, err := readKeys(c)
		if err != nil {
			r.err = fmt.Errorf("slot %d: node %s: countkeysinslot/getkeysinslot: %w", r.p.slot, from.Addr, err)
			return
		}
		r.left, r.keys, r.goal = n, keys, n
		if half {
			r.goal = n / 2
		}
	})
	per := roundMigrates
	b := poll.Backoff{Min: 10 * time.Millisecond, Max: 500 * time.Millisecond}
	for {
		var active []*slotRun
		for _, r := range live(runs) {
			if r.left > 0 && r.moved < r.goal {
				active = append(active, r)
			}
		}
		if len(active) == 0 {
			return
		}
		failed, stuck := false, false
		for i := 0; i < len(active); i += per {
			group := active[i:min(i+per, len(active))]
			f, s := e.round(ctx, group, from, to, half, back)
			failed, stuck = failed || f, stuck || s
		}
		per = roundMigrates
		if failed {
			per = 1
		}
		if stuck && b.Wait(ctx) != nil {
			for _, r := range live(active) {
				r.err = fmt.Errorf("slot %d: %w", r.p.slot, context.Cause(ctx))
			}
			return
		}
	}
}

// round is one pipeline of MIGRATEs (each followed by its slot's re-read)
// for group. It reports whether a MIGRATE or read failed, and whether a
// slot made no progress.
func (e *engine) round(ctx context.Context, group []*slotRun, from, to topology.Node, half, back bool) (failed, stuck bool) {
	slot := e.roundSlot(from.ID)
	slot <- struct{}{}
	defer func() { <-slot }()
	// A round may wait on the node behind the other round in flight.
	e.each(ctx, from.Addr, group, roundsInFlight*roundMigrates*e.o.Timeout, func(r *slotRun) [][]any {
		r.sent = r.keys
		if half && int64(len(r.sent)) > r.goal-r.moved {
			r.sent = r.sent[:r.goal-r.moved]
		}
		var cmds [][]any
		if len(r.sent) > 0 {
			if back {
				cmds = append(cmds, []any{"ASKING"})
			}
			cmds = append(cmds, migrateArgs(to, e.o.Timeout, e.conn, !back, r.sent))
			r.batches++
		}
		return append(cmds, e.countAndKeys(r.p.slot)...)
	}, func(r *slotRun, c []*redis.Cmd) {
		var mig *redis.Cmd
		if len(c) > 2 {
			mig, c = c[len(c)-3], c[len(c)-2:]
		}
		n, keys, rerr := readKeys(c)
		var merr error
		var reply string
		if mig != nil {
			merr = mig.Err()
			reply, _ = mig.Val().(string)
		}
		if rerr == nil && merr != nil && back && strings.Contains(merr.Error(), "BUSYKEY") {
			if rerr = e.dropShadowed(ctx, r.p.slot, to, from, r.sent); rerr == nil {
				n, keys, rerr = e.reread(ctx, from, r.p.slot)
				merr = nil
			}
		}
		switch {
		case rerr != nil:
			failed = true
			r.last = fmt.Errorf("slot %d: node %s: countkeysinslot/getkeysinslot: %w", r.p.slot, from.Addr, rerr)
		case merr != nil:
			failed = true
			r.last = fmt.Errorf("slot %d: node %s: migrate to %s: %w", r.p.slot, from.Addr, to.Addr, merr)
		}
		if rerr == nil {
			if merr == nil && reply == "OK" {
				r.moved += int64(len(r.sent))
			} else if n < r.left {
				r.moved += r.left - n // a partly applied batch, or keys that expired
			}
			progress := n < r.left
			r.left, r.keys = n, keys
			if progress {
				r.stuck = 0
				return
			}
		}
		stuck = true
		if r.stuck++; r.stuck >= maxStuck {
			if r.last == nil {
				r.last = fmt.Errorf("slot %d: node %s: %d keys counted, none listed", r.p.slot, from.Addr, r.left)
			}
			hint := ""
			if strings.Contains(r.last.Error(), "IOERR") || strings.Contains(r.last.Error(), "timeout") {
				hint = "; a large key may need a longer Timeout"
			}
			r.err = fmt.Errorf("%w (%d keys of the slot left on %s after %d rounds that moved none%s)", r.last, r.left, from.Addr, r.stuck, hint)
		}
	})
	return failed, stuck
}

// roundSlot is the semaphore of MIGRATE rounds in flight to the node with
// this id (see roundMigrates).
func (e *engine) roundSlot(id string) chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rounds == nil {
		e.rounds = map[string]chan struct{}{}
	}
	c, ok := e.rounds[id]
	if !ok {
		c = make(chan struct{}, roundsInFlight)
		e.rounds[id] = c
	}
	return c
}

// reread reads one slot's key count and next keys.
func (e *engine) reread(ctx context.Context, from topology.Node, slot int) (int64, []string, error) {
	cctx, cancel := context.WithTimeout(ctx, e.conn.CallTimeout())
	defer cancel()
	pipe := e.client(from.Addr).Pipeline()
	var c []*redis.Cmd
	for _, args := range e.countAndKeys(slot) {
		c = append(c, pipe.Do(cctx, args...))
	}
	_, _ = pipe.Exec(cctx)
	return readKeys(c)
}

// finalise assigns the slots to their target, in the order of PR #10381:
// the target first (it leaves IMPORTING, bumps its config epoch and
// broadcasts its claim), then the source, then every other master
// (batched, see notify). A slot is finalised only if its source has just
// been seen holding no key of it: a target finalised before that makes the
// source delete the keys it still holds as soon as it hears the claim
// (trap 1; seen on 7.0.15: COUNTKEYSINSLOT on the source fell from 3 to
// 0). No key can appear on the source after that check: while the slot is
// MIGRATING the source answers ASK for any key it does not hold. A src
// with a zero ID (Finish: no node to empty) is skipped.
//
// On the target (quiet: slots this chunk opened, so the target imports
// every one of them), only the first and the last slot take the plain
// SETSLOT NODE: on a node importing the slot, it bumps the node's
// config epoch unless it is already the highest, and broadcasts a PONG
// with its slots to every node, each of which then walks all 16384 slots.
// One per slot (redis-cli's way) made the source, busy with its MIGRATEs,
// the bottleneck: 5461 slots took 1.2 s instead of 0.8 s here. The first
// slot's NODE makes the target's epoch higher than its source's (what
// makes every node accept its claims, #3776; within a wave no source
// bumps, see waves); the last one's broadcast tells every node the whole
// chunk. Each slot in between gets SETSLOT STABLE then SETSLOT NODE in one
// MULTI/EXEC on the target: atomic, so no client ever finds the slot
// neither imported nor owned by it, and assigned under that same highest
// epoch, without a broadcast. Without quiet (Finish's repairs, where the
// target may already own some of the slots) every slot takes the plain
// path.
func (e *engine) finalise(ctx context.Context, runs []*slotRun, src, dst topology.Node, quiet bool) {
	if src.ID != "" {
		e.each(ctx, src.Addr, live(runs), 0, func(r *slotRun) [][]any {
			return [][]any{{"CLUSTER", "COUNTKEYSINSLOT", r.p.slot}}
		}, func(r *slotRun, c []*redis.Cmd) {
			n, err := c[0].Int64()
			switch {
			case err != nil:
				r.err = fmt.Errorf("slot %d: node %s: countkeysinslot: %w (not finalised)", r.p.slot, src.Addr, err)
			case n != 0:
				r.err = fmt.Errorf("slot %d: source %s still holds %d keys of it: not finalised", r.p.slot, src.Addr, n)
			}
		})
	}
	ok := live(runs)
	if !quiet {
		e.setslot(ctx, dst.Addr, ok, nil, "NODE", dst.ID)
		ok = nil
	}
	if len(ok) > 0 {
		e.setslot(ctx, dst.Addr, ok[:1], nil, "NODE", dst.ID)
	}
	if len(ok) > 2 && ok[0].err == nil {
		e.each(ctx, dst.Addr, ok[1:len(ok)-1], 0, func(r *slotRun) [][]any {
			return [][]any{{"MULTI"}, {"CLUSTER", "SETSLOT", r.p.slot, "STABLE"}, {"CLUSTER", "SETSLOT", r.p.slot, "NODE", dst.ID}, {"EXEC"}}
		}, func(r *slotRun, c []*redis.Cmd) {
			if err := execErr(c[3]); err != nil {
				r.err = fmt.Errorf("slot %d: node %s: multi setslot stable, setslot node: %w", r.p.slot, dst.Addr, err)
			}
		})
	} else if len(ok) > 2 {
		e.setslot(ctx, dst.Addr, ok[1:len(ok)-1], nil, "NODE", dst.ID)
	}
	if len(ok) > 1 {
		e.setslot(ctx, dst.Addr, ok[len(ok)-1:], nil, "NODE", dst.ID)
	}
	if src.ID != "" {
		// A source that gave away its last slot may already have become a
		// replica of the target (cluster-allow-replica-migration, #9223).
		e.setslot(ctx, src.Addr, live(runs), onlyMasters, "NODE", dst.ID)
	}
	for _, r := range live(runs) {
		e.notify(ctx, r.p)
		e.logf("slot %d: %s -> %s, %d keys", r.p.slot, src.Addr, dst.Addr, r.moved)
	}
}

// execErr is an EXEC's error, or the first error among its replies.
func execErr(c *redis.Cmd) error {
	vals, err := c.Slice()
	if err != nil {
		return err
	}
	for _, v := range vals {
		if err, ok := v.(error); ok {
			return err
		}
	}
	return nil
}

func onlyMasters(err error) bool { return strings.Contains(err.Error(), "only with masters") }

// returnKeys moves the keys that importing targets hold back to the slots'
// owner in place and closes the slots (src: the owner, dst: the target;
// Abort uses it for an owner whose only slot is open). The owner is made
// STABLE first: a MIGRATING owner refuses the keys (see Abort). Then the
// target, which serves MIGRATE for a slot it imports (verified on 7.0.15,
// with or without ASKING; a node that neither owns nor imports a slot
// answers MOVED), sends them back without REPLACE (see drain). The target
// is made STABLE only once it holds no key of the slot (STABLE on a
// target that holds keys orphans them, #4937).
func (e *engine) returnKeys(ctx context.Context, runs []*slotRun, src, dst topology.Node) {
	var migrating, notImporting []*slotRun
	for _, r := range runs {
		if _, ok := src.Migrating[r.p.slot]; ok {
			migrating = append(migrating, r)
		}
		if _, ok := dst.Importing[r.p.slot]; !ok {
			notImporting = append(notImporting, r)
		}
	}
	e.setslot(ctx, src.Addr, migrating, nil, "STABLE")
	e.setslot(ctx, dst.Addr, live(notImporting), nil, "IMPORTING", src.ID)
	e.drain(ctx, runs, dst, src, false, true)
	e.each(ctx, dst.Addr, live(runs), 0, func(r *slotRun) [][]any {
		return [][]any{{"CLUSTER", "COUNTKEYSINSLOT", r.p.slot}}
	}, func(r *slotRun, c []*redis.Cmd) {
		n, err := c[0].Int64()
		switch {
		case err != nil:
			r.err = fmt.Errorf("slot %d: node %s: countkeysinslot: %w (not closing it)", r.p.slot, dst.Addr, err)
		case n != 0:
			r.err = fmt.Errorf("slot %d: node %s still holds %d keys of it: not closing it", r.p.slot, dst.Addr, n)
		}
	})
	e.setslot(ctx, dst.Addr, live(runs), nil, "STABLE")
	for _, r := range live(runs) {
		e.logf("slot %d returned: %s -> %s, %d keys", r.p.slot, dst.Addr, src.Addr, r.moved)
	}
}
