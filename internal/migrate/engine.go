package migrate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/failover"
	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/topology"
)

// step is what is done to one slot.
type step int

const (
	// stepMove opens the slot (IMPORTING on the target, then MIGRATING on
	// the source), moves every key, and finalises.
	stepMove step = iota
	// stepHold opens the slot and moves about half its keys.
	stepHold
	// stepFinalise only checks that the source holds no key of the slot
	// and finalises (Finish, for a slot its target already owns or that
	// no node claims).
	stepFinalise
	// stepReturn moves the keys on an importing target back to the
	// slot's owner in place and closes the slot (Abort, see returnKeys).
	stepReturn
)

// pair is one slot's move, with both nodes as the cluster describes them
// (ID and the address they are reached at; the source talks to the
// target's announced address too).
type pair struct {
	slot     int
	src, dst topology.Node // src has a zero ID for stepFinalise with no source
	step     step
}

func (p pair) String() string {
	return fmt.Sprintf("slot %d %s -> %s", p.slot, p.src.Addr, p.dst.Addr)
}

// engine holds the clients and settings of one call.
type engine struct {
	conn redisconn.Options
	o    Options

	mu      sync.Mutex
	clients map[string]*redis.Client
	masters []topology.Node // told of each finalised slot after its target and source
	pending []pair          // finalised, not yet told to the other masters
	logMu   sync.Mutex
}

func newEngine(conn redisconn.Options, o Options) *engine {
	return &engine{conn: conn, o: o, clients: map[string]*redis.Client{}}
}

func (e *engine) close() {
	for _, c := range e.clients {
		_ = c.Close()
	}
}

// client returns the engine's client to addr: redisconn's settings (auth,
// TLS, no retries), a pool as large as the slots in flight, and a read
// timeout that a MIGRATE running its full Options.Timeout fits in (each
// call is bounded by its own context; redisconn's Node clients have 2
// connections and the plain call timeout).
func (e *engine) client(addr string) *redis.Client {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.clients[addr]
	if !ok {
		t := e.conn.CallTimeout()
		c = redis.NewClient(&redis.Options{
			Addr:                  addr,
			Username:              e.conn.Username,
			Password:              e.conn.Password,
			TLSConfig:             e.conn.TLSConfig,
			DialTimeout:           t,
			ReadTimeout:           t + e.o.Timeout,
			WriteTimeout:          t,
			ContextTimeoutEnabled: true,
			MaxRetries:            -1,
			DialerRetries:         1,
			PoolSize:              e.o.Parallel + 2,
			DisableIdentity:       true,
			Protocol:              2,
		})
		e.clients[addr] = c
	}
	return c
}

// call sends one command to addr, bounded by the call timeout.
func (e *engine) call(ctx context.Context, addr string, args ...any) *redis.Cmd {
	cctx, cancel := context.WithTimeout(ctx, e.conn.CallTimeout())
	defer cancel()
	return e.client(addr).Do(cctx, args...)
}

func (e *engine) logf(format string, a ...any) {
	if e.o.Log == nil {
		return
	}
	e.logMu.Lock()
	defer e.logMu.Unlock()
	fmt.Fprintf(e.o.Log, format+"\n", a...)
}

// maxStuck bounds the attempts in a row that move no key (a MIGRATE or
// read that fails without the source's key count going down).
const maxStuck = 5

// run does each pair's step, o.Parallel slots at a time. After the first
// error (or when ctx ends) it starts no new slot and waits for the ones in
// flight; the error names the slots that may be left open.
func (e *engine) run(ctx context.Context, res *Result, pairs []pair) error {
	sem := make(chan struct{}, e.o.Parallel)
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
	for _, p := range pairs {
		if failing() || ctx.Err() != nil {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break launch
		}
		wg.Go(func() {
			defer func() { <-sem }()
			moved, batches, err := e.slot(ctx, p)
			mu.Lock()
			defer mu.Unlock()
			res.Keys += moved
			res.Batches += batches
			if err != nil {
				errs = append(errs, err)
				failed = append(failed, p)
				return
			}
			res.Moves = append(res.Moves, Move{Slot: p.slot, From: p.src.ID, To: p.dst.ID})
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
	const maxErrs = 5
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

// slot does one pair's step; it returns the keys moved and MIGRATE calls.
func (e *engine) slot(ctx context.Context, p pair) (int64, int, error) {
	var moved int64
	var batches int
	var err error
	switch p.step {
	case stepMove, stepHold:
		if err = e.open(ctx, p); err != nil {
			return 0, 0, err
		}
		moved, batches, err = e.drain(ctx, p.src, p.dst, p.slot, p.step == stepHold, false)
		if err != nil || p.step == stepHold {
			if err == nil {
				e.logf("slot %d held open: %s -> %s, %d keys moved", p.slot, p.src.Addr, p.dst.Addr, moved)
			}
			return moved, batches, err
		}
	case stepReturn:
		moved, batches, err = e.returnKeys(ctx, p)
		if err == nil {
			e.logf("slot %d returned: %s -> %s, %d keys", p.slot, p.dst.Addr, p.src.Addr, moved)
		}
		return moved, batches, err
	}
	if err = e.finalise(ctx, p); err != nil {
		return moved, batches, err
	}
	e.logf("slot %d: %s -> %s, %d keys", p.slot, p.src.Addr, p.dst.Addr, moved)
	return moved, batches, nil
}

// open puts the slot in migration, in the only safe order: IMPORTING on
// the target first, so that the ASK replies the source starts sending
// once it is MIGRATING reach a target that accepts them (trap 3). Both
// are idempotent, so Finish re-opens a half-opened slot the same way.
func (e *engine) open(ctx context.Context, p pair) error {
	if err := e.call(ctx, p.dst.Addr, "CLUSTER", "SETSLOT", p.slot, "IMPORTING", p.src.ID).Err(); err != nil {
		return fmt.Errorf("slot %d: node %s: setslot importing: %w", p.slot, p.dst.Addr, err)
	}
	if err := e.call(ctx, p.src.Addr, "CLUSTER", "SETSLOT", p.slot, "MIGRATING", p.dst.ID).Err(); err != nil {
		return fmt.Errorf("slot %d: node %s: setslot migrating: %w", p.slot, p.src.Addr, err)
	}
	return nil
}

// keysIn reads how many keys of slot addr holds and the first Batch of
// them, in one round trip.
func (e *engine) keysIn(ctx context.Context, addr string, slot int) (int64, []string, error) {
	cctx, cancel := context.WithTimeout(ctx, e.conn.CallTimeout())
	defer cancel()
	pipe := e.client(addr).Pipeline()
	count := pipe.ClusterCountKeysInSlot(cctx, slot)
	keys := pipe.ClusterGetKeysInSlot(cctx, slot, e.o.Batch)
	if _, err := pipe.Exec(cctx); err != nil {
		return 0, nil, fmt.Errorf("slot %d: node %s: countkeysinslot/getkeysinslot: %w", slot, addr, err)
	}
	return count.Val(), keys.Val(), nil
}

// migrateArgs is MIGRATE as redis-cli sends it (clusterManagerMigrateKeysInReply),
// always with REPLACE when replace is set, and with rcluster's own
// credentials for the receiving node.
func migrateArgs(to topology.Node, timeout time.Duration, conn redisconn.Options, replace bool, keys []string) []any {
	args := make([]any, 0, 12+len(keys))
	args = append(args, "MIGRATE", to.IP(), to.Port(), "", 0, max(timeout.Milliseconds(), 1))
	if replace {
		args = append(args, "REPLACE")
	}
	switch {
	case conn.Username != "" && conn.Password != "":
		args = append(args, "AUTH2", conn.Username, conn.Password)
	case conn.Password != "":
		args = append(args, "AUTH", conn.Password)
	}
	args = append(args, "KEYS")
	for _, k := range keys {
		args = append(args, k)
	}
	return args
}

// batch runs one MIGRATE of keys from `from` to `to` and, in the same round
// trip, re-reads the slot's key count and next keys on `from` (a batch is
// not all-or-nothing: after an error only the re-read says what moved).
// asking prefixes the MIGRATE with ASKING (a node sending keys of a slot
// it imports, see returnKeys). migErr is MIGRATE's own error; err is a
// failure to read the node at all.
func (e *engine) batch(ctx context.Context, from, to topology.Node, slot int, keys []string, replace, asking bool) (reply string, migErr error, left int64, next []string, err error) {
	cctx, cancel := context.WithTimeout(ctx, e.conn.CallTimeout()+e.o.Timeout)
	defer cancel()
	pipe := e.client(from.Addr).Pipeline()
	if asking {
		pipe.Do(cctx, "ASKING")
	}
	mig := pipe.Do(cctx, migrateArgs(to, e.o.Timeout, e.conn, replace, keys)...)
	count := pipe.ClusterCountKeysInSlot(cctx, slot)
	getk := pipe.ClusterGetKeysInSlot(cctx, slot, e.o.Batch)
	_, _ = pipe.Exec(cctx)
	if err := count.Err(); err != nil {
		return "", mig.Err(), 0, nil, fmt.Errorf("slot %d: node %s: countkeysinslot after migrate: %w", slot, from.Addr, err)
	}
	if err := getk.Err(); err != nil {
		return "", mig.Err(), 0, nil, fmt.Errorf("slot %d: node %s: getkeysinslot after migrate: %w", slot, from.Addr, err)
	}
	reply, _ = mig.Val().(string)
	return reply, mig.Err(), count.Val(), getk.Val(), nil
}

// drain moves keys of slot from `from` to `to` batch by batch until `from`
// holds none of them (half: until about half of what it held has moved).
// It returns the keys moved and the MIGRATE calls made. Every loop round
// re-reads the key count, and a round in which it does not fall counts
// towards maxStuck (a batch is not all-or-nothing, trap 4).
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
// Back (returnKeys: from is an importing target, to the slot's owner), the
// MIGRATE goes without REPLACE, after ASKING, and BUSYKEY means the owner
// has a newer copy (see dropShadowed).
func (e *engine) drain(ctx context.Context, from, to topology.Node, slot int, half, back bool) (int64, int, error) {
	left, keys, err := e.keysIn(ctx, from.Addr, slot)
	if err != nil {
		return 0, 0, err
	}
	goal := left
	if half {
		goal = left / 2
	}
	var moved int64
	var last error
	batches, stuck := 0, 0
	b := poll.Backoff{Min: 10 * time.Millisecond, Max: 500 * time.Millisecond}
	for left > 0 && moved < goal {
		if half && int64(len(keys)) > goal-moved {
			keys = keys[:goal-moved]
		}
		var reply string
		var merr, rerr error
		nleft, nkeys := left, keys
		if len(keys) == 0 {
			// Counted but not listed: keys expiring under us. Re-read.
			nleft, nkeys, rerr = e.keysIn(ctx, from.Addr, slot)
		} else {
			reply, merr, nleft, nkeys, rerr = e.batch(ctx, from, to, slot, keys, !back, back)
			batches++
		}
		if ctx.Err() != nil {
			return moved, batches, fmt.Errorf("slot %d: %w", slot, context.Cause(ctx))
		}
		if rerr == nil && merr != nil && back && strings.Contains(merr.Error(), "BUSYKEY") {
			if rerr = e.dropShadowed(ctx, slot, to, from, keys); rerr == nil {
				nleft, nkeys, rerr = e.keysIn(ctx, from.Addr, slot)
				merr = nil
			}
		}
		switch {
		case rerr != nil:
			last = rerr
		case merr != nil:
			last = fmt.Errorf("slot %d: node %s: migrate to %s: %w", slot, from.Addr, to.Addr, merr)
		}
		if rerr == nil {
			if merr == nil && reply == "OK" {
				moved += int64(len(keys))
			} else if nleft < left {
				moved += left - nleft // a partly applied batch
			}
			if nleft < left {
				stuck = 0
				left, keys = nleft, nkeys
				continue
			}
		}
		if stuck++; stuck >= maxStuck {
			if last == nil {
				last = fmt.Errorf("slot %d: node %s: %d keys counted, none listed", slot, from.Addr, left)
			}
			return moved, batches, fmt.Errorf("%w (%d keys of the slot left on %s after %d attempts that moved none)", last, left, from.Addr, stuck)
		}
		if b.Wait(ctx) != nil {
			return moved, batches, fmt.Errorf("slot %d: %w", slot, context.Cause(ctx))
		}
		if rerr == nil {
			left, keys = nleft, nkeys
		} else if l, k, err := e.keysIn(ctx, from.Addr, slot); err == nil {
			moved += max(left-l, 0)
			left, keys = l, k
		}
	}
	return moved, batches, nil
}

// finalise assigns the slot to its target, in the order of PR #10381: the
// target first (it leaves IMPORTING, bumps its config epoch and broadcasts
// its claim), then the source, then every other master (batched, see
// notify). It refuses unless the source has just been seen holding no key
// of the slot: a target finalised before that makes the source delete the
// keys it still holds as soon as it hears the claim (trap 1; seen on
// 7.0.15: COUNTKEYSINSLOT on the source fell from 3 to 0). No key can
// appear on the source after that check: while the slot is MIGRATING the
// source answers ASK for any key it does not hold.
func (e *engine) finalise(ctx context.Context, p pair) error {
	if p.src.ID != "" {
		n, err := e.call(ctx, p.src.Addr, "CLUSTER", "COUNTKEYSINSLOT", p.slot).Int64()
		if err != nil {
			return fmt.Errorf("slot %d: node %s: countkeysinslot: %w (not finalised)", p.slot, p.src.Addr, err)
		}
		if n != 0 {
			return fmt.Errorf("slot %d: source %s still holds %d keys of it: not finalised", p.slot, p.src.Addr, n)
		}
	}
	if err := e.call(ctx, p.dst.Addr, "CLUSTER", "SETSLOT", p.slot, "NODE", p.dst.ID).Err(); err != nil {
		return fmt.Errorf("slot %d: node %s: setslot node (target): %w", p.slot, p.dst.Addr, err)
	}
	if p.src.ID != "" {
		err := e.call(ctx, p.src.Addr, "CLUSTER", "SETSLOT", p.slot, "NODE", p.dst.ID).Err()
		// A source that gave away its last slot may already have become a
		// replica of the target (cluster-allow-replica-migration, #9223).
		if err != nil && !strings.Contains(err.Error(), "only with masters") {
			return fmt.Errorf("slot %d: node %s: setslot node (source): %w", p.slot, p.src.Addr, err)
		}
	}
	e.notify(ctx, p)
	return nil
}

// notifyBatch is how many finalised slots are told to the other masters
// in one pipeline each.
const notifyBatch = 64

// notify queues a finalised slot for the other masters and tells them
// once a batch is full. They would learn it from the target's broadcast
// and gossip anyway; telling them directly is what redis-cli does, and
// one pipeline per master per batch keeps that cheap with many masters.
func (e *engine) notify(ctx context.Context, p pair) {
	e.mu.Lock()
	e.pending = append(e.pending, p)
	var batch []pair
	if len(e.pending) >= notifyBatch {
		batch, e.pending = e.pending, nil
	}
	e.mu.Unlock()
	if batch != nil {
		e.tell(ctx, batch)
	}
}

// flush tells the other masters the slots still queued.
func (e *engine) flush(ctx context.Context) {
	e.mu.Lock()
	batch := e.pending
	e.pending = nil
	e.mu.Unlock()
	if len(batch) > 0 {
		e.tell(ctx, batch)
	}
}

// tell sends SETSLOT NODE for each finalised slot to every master other
// than its source and target, one pipeline per master, in parallel. A
// failure is logged, not returned: ownership has moved already, gossip
// carries it, and the final wait checks that every node agrees.
func (e *engine) tell(ctx context.Context, batch []pair) {
	var wg sync.WaitGroup
	for _, m := range e.masters {
		var mine []pair
		for _, p := range batch {
			if m.ID != p.src.ID && m.ID != p.dst.ID {
				mine = append(mine, p)
			}
		}
		if len(mine) == 0 {
			continue
		}
		c := e.client(m.Addr)
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, e.conn.CallTimeout())
			defer cancel()
			pipe := c.Pipeline()
			cmds := make([]*redis.Cmd, len(mine))
			for i, p := range mine {
				cmds[i] = pipe.Do(cctx, "CLUSTER", "SETSLOT", p.slot, "NODE", p.dst.ID)
			}
			_, _ = pipe.Exec(cctx)
			for i, cmd := range cmds {
				if err := cmd.Err(); err != nil && !strings.Contains(err.Error(), "only with masters") {
					e.logf("slot %d: node %s: setslot node: %v (gossip will tell it)", mine[i].slot, m.Addr, err)
				}
			}
		})
	}
	wg.Wait()
}

// bound gives a wait a deadline when ctx has none.
func bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultAgreeTimeout)
}

// waitOwners polls every reachable node until each one's view shows the
// given owner (node id) of every slot. Between waves it is the whole wait
// (slots of a later wave may be open by design); at the end agree adds the
// full health check.
func (e *engine) waitOwners(ctx context.Context, seeds []string, owners map[int]string) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	b := poll.Backoff{Min: 5 * time.Millisecond, Max: 50 * time.Millisecond}
	start := time.Now()
	for {
		snap, err := e.read(ctx, seeds)
		if err == nil {
			err = ownersDiffer(snap, owners)
			if err == nil {
				return nil
			}
		}
		if b.Wait(ctx) != nil {
			return fmt.Errorf("%w after %v: %w", failover.ErrNotAgreed, time.Since(start).Round(time.Millisecond), err)
		}
	}
}

// ownersDiffer says which answering node sees which slot owned by another
// node than owners says, or nil.
func ownersDiffer(snap *snapshot, owners map[int]string) error {
	var pr []string
	for _, v := range snap.views {
		if v.err != nil {
			continue // a node that does not answer takes no part
		}
		m := topology.SlotOwners(v.nodes)
		var wrong []topology.SlotRange
		for s, id := range owners {
			if m[s] != id {
				wrong = append(wrong, topology.SlotRange{Start: s, End: s})
			}
		}
		if len(wrong) > 0 {
			pr = append(pr, fmt.Sprintf("%s does not see the new owner of slots %s yet", v.addr, truncate(topology.FormatRanges(topology.MergeRanges(wrong)), 80)))
		}
		if len(pr) >= 8 {
			break
		}
	}
	if len(pr) == 0 {
		return nil
	}
	return errors.New(strings.Join(pr, "; "))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// agree is the final wait: every reachable node sees the new owners, then
// the cluster is healthy by internal/health on every node that answers (no
// open slot, one slot map, all slots served, replica links up, epochs
// unique: failover.WaitConverged). It sets res.Agreed.
func (e *engine) agree(ctx context.Context, seeds []string, res *Result, owners map[int]string) error {
	start := time.Now()
	defer func() { res.Agreed = time.Since(start) }()
	ctx, cancel := bound(ctx)
	defer cancel()
	if err := e.waitOwners(ctx, seeds, owners); err != nil {
		return err
	}
	if _, err := failover.WaitConverged(ctx, seeds, e.conn, failover.Want{}); err != nil {
		return err
	}
	e.logf("every node agrees after %v", time.Since(start).Round(time.Millisecond))
	return nil
}

// ownersOf maps each pair's slot to its target.
func ownersOf(pairs []pair) map[int]string {
	m := make(map[int]string, len(pairs))
	for _, p := range pairs {
		m[p.slot] = p.dst.ID
	}
	return m
}
