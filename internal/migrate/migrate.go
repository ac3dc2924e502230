// Package migrate moves hash slots, with their keys, between the masters of
// a running Redis Cluster, without losing an acknowledged write and
// without a client ever reading nil for a key that exists. It is the engine
// under rcluster's migrate, reshard, rebalance and scaling; it talks only
// Redis (go-redis with redisconn's settings), so it works on every runtime.
//
// Each slot goes through redis-cli's sequence (clusterManagerMoveSlot; see
// shared/reference/redis-cluster-ops.md sections 1 and 3), with three
// differences: many slots are in flight at once, a MIGRATE carries up to
// Options.Batch keys, and a slot is finalised only once its source has been
// seen holding no key of it. Nothing is saved outside the cluster: an
// interrupted migration (a cancelled context, a SIGKILLed rcluster, a node
// that died) is found again by Open from what the nodes say, and completed
// by Finish or undone by Abort.
//
// What bounds the speed is MIGRATE itself, on the source. It takes keys
// of one slot only (keys of two slots get CROSSSLOT), so a slot costs at
// least one MIGRATE however many slots are in flight, and the source runs
// its MIGRATEs one after the other, blocked for each until the target has
// answered every key: it dumps the key, waits for the target, then reads
// each "+OK" byte by byte (5 read calls a key), then deletes it. Measured
// on 2 vCPUs, Redis 7.0.15, appendonly yes, nothing else running, 333,292
// keys of 100 bytes between two standalone nodes, MIGRATEs pipelined 8 at
// a time: 61 keys a MIGRATE (one slot of a 1,000,000-key cluster) took
// 3.2-3.6 s (~10 us a key; 2.9 s without AOF), 1000 keys a MIGRATE 1.9 s.
// Moving one master's 5461 slots of such a cluster, the source spent
// 3.5-4.2 s inside MIGRATE out of the 4.1-5.5 s the keys took (rounds
// were in flight to it all the time); then the emptied master became a
// replica of the target and fully synced its 666,000 keys, which the
// final wait includes: 1.2-1.5 s (0.7-1.0 s with repl-diskless-load
// on-empty-db, where the replica loads from the socket instead of writing
// and fsyncing an RDB file first).
package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rcluster/rcluster/internal/failover"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/topology"
)

// Move asks for one slot to be moved to another master.
type Move struct {
	Slot int `json:"slot"`
	// From is the node id of the slot's owner; empty means whoever owns
	// it (and a move to the owner itself is then skipped, not an error).
	From string `json:"from,omitempty"`
	// To is the node id of the master that receives the slot.
	To string `json:"to"`
}

func (m Move) String() string {
	if m.From == "" {
		return fmt.Sprintf("slot %d -> %.8s", m.Slot, m.To)
	}
	return fmt.Sprintf("slot %d %.8s -> %.8s", m.Slot, m.From, m.To)
}

// Defaults for zero Options fields.
const (
	// DefaultBatch keys per MIGRATE: one MIGRATE blocks the source while it
	// runs, and 1000 keys of 100 bytes take about 5.5 ms (2 vCPUs, see the
	// package comment).
	DefaultBatch = 1000
	// DefaultParallel slots in flight at once (4 chunks of 32, see run).
	DefaultParallel = 128
	// DefaultTimeout is MIGRATE's own timeout (each I/O step between the
	// source and the target).
	DefaultTimeout = 5 * time.Second
	// DefaultAgreeTimeout bounds the final wait for every node to agree
	// when ctx has no deadline.
	DefaultAgreeTimeout = 60 * time.Second
)

// Options tune Migrate, Finish and Abort.
type Options struct {
	// Batch is the number of keys per MIGRATE (redis-cli's
	// --cluster-pipeline, which defaults to 10). Zero: DefaultBatch.
	Batch int
	// Parallel is how many slots are migrated at once; each slot's own
	// steps stay strictly ordered. Zero: DefaultParallel.
	Parallel int
	// Timeout is MIGRATE's timeout argument: each I/O step between source
	// and target must finish within it. Raise it for very large keys
	// (which also block both nodes: keep it below cluster-node-timeout). A
	// target that stops answering blocks its source up to 8 times Timeout
	// once (the MIGRATEs queued at it, see roundMigrates), then Timeout per
	// retry. Zero: DefaultTimeout. The whole call is bounded by ctx.
	Timeout time.Duration
	// Hold (Migrate only) opens the slots and moves about half of each
	// slot's keys (rounded down), then returns leaving them open: MIGRATING
	// on the source, IMPORTING on the target. Clients then get real ASK
	// and TRYAGAIN replies until Finish or Abort.
	Hold bool
	// Log, when set, gets one line per slot and per phase.
	Log io.Writer
}

func (o Options) withDefaults() Options {
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return o
}

// ErrBadMove: a move names a slot out of range, an unknown node, a replica,
// a From that does not own the slot, the same node as From and To, or a
// slot twice. Nothing was changed. The message names the move.
var ErrBadMove = errors.New("bad move")

// ErrCannotFix: an open slot is in a state that cannot be completed or
// undone without risking keys (for example two nodes claim it, or a node
// that neither sends nor receives it holds keys of it). Nothing was done to
// that slot; the message says what the nodes report.
var ErrCannotFix = errors.New("open slot cannot be repaired automatically")

// Result is what a call did. On error it is still returned, with what was
// completed before the error.
type Result struct {
	// Moves are the slots finalised on their target (Hold: opened), in
	// the order they completed.
	Moves []Move `json:"moves"`
	// Keys is the number of keys moved by MIGRATE (both directions for
	// Abort).
	Keys int64 `json:"keys"`
	// Batches is the number of MIGRATE calls.
	Batches int `json:"batches"`
	// Elapsed is the whole call; Agreed is the final wait's share of it
	// (from the last slot finalised to every node agreeing).
	Elapsed time.Duration `json:"elapsed_ns"`
	Agreed  time.Duration `json:"agreed_ns"`
}

// String summarises the result: "1000 slots, 20000 keys in 1000 MIGRATEs,
// 1.2s (agreed in 30ms)".
func (r *Result) String() string {
	return fmt.Sprintf("%d slots, %d keys in %d MIGRATEs, %v (agreed in %v)", len(r.Moves), r.Keys, r.Batches,
		r.Elapsed.Round(time.Millisecond), r.Agreed.Round(time.Millisecond))
}

// Migrate moves each slot of moves, with its keys, to its To node, and
// returns when every reachable node agrees on the new owners, no slot is
// open and the cluster is healthy by internal/health (with o.Hold: when
// the slots are open and half their keys moved; nothing else changes).
//
// It refuses, changing nothing, bad moves (ErrBadMove) and a cluster that
// is not healthy or already has an open slot (run Finish or Abort first).
// Slots are migrated o.Parallel at a time; in a set of moves where some
// node both gives and receives slots, the moves are run in waves in which
// no node does both (see waves), each wave agreed on before the next. On
// an error (or when ctx ends) no new slot is started, the slots in flight
// stop where they are and stay open, and the error names them: Open
// reports them and Finish or Abort completes them.
func Migrate(ctx context.Context, seeds []string, conn redisconn.Options, moves []Move, o Options) (*Result, error) {
	start := time.Now()
	o = o.withDefaults()
	e := newEngine(conn, o)
	defer e.close()
	res := &Result{}
	defer func() { res.Elapsed = time.Since(start) }()
	snap, err := e.read(ctx, seeds)
	if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	pairs, err := resolve(snap, moves)
	if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	if len(pairs) == 0 {
		return res, nil
	}
	if _, err := failover.Converged(ctx, seeds, conn, failover.Want{}); err != nil {
		return res, fmt.Errorf("migrate: the cluster is not healthy, nothing changed (run Finish or Abort for open slots): %w", err)
	}
	e.masters = snap.masters()
	if o.Hold {
		for i := range pairs {
			pairs[i].step = stepHold
		}
		if err := e.run(ctx, res, pairs); err != nil {
			return res, fmt.Errorf("migrate --hold: %w", err)
		}
		return res, nil
	}
	if err := e.runWaves(ctx, seeds, res, pairs); err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	if err := e.agree(ctx, seeds, res, ownersOf(pairs)); err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	return res, nil
}

// resolve checks moves against a snapshot and turns them into pairs with
// both nodes' addresses. Moves of a slot to the node that owns it and that
// name no From are dropped.
func resolve(snap *snapshot, moves []Move) ([]pair, error) {
	owners := snap.owners()
	seen := map[int]bool{}
	var out []pair
	for _, m := range moves {
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%w: %v: %s", ErrBadMove, m, fmt.Sprintf(format, a...))
		}
		if m.Slot < 0 || m.Slot >= topology.SlotCount {
			return nil, bad("slot %d out of range 0-%d", m.Slot, topology.SlotCount-1)
		}
		if seen[m.Slot] {
			return nil, bad("slot %d is moved twice", m.Slot)
		}
		seen[m.Slot] = true
		if m.From != "" && m.From == m.To {
			return nil, bad("From and To are the same node")
		}
		to, ok := snap.node(m.To)
		switch {
		case !ok:
			return nil, bad("no node %q in the cluster (nodes: %s)", m.To, snap.list())
		case to.IsReplica():
			return nil, bad("target %s is a replica (of %s), not a master", snap.name(m.To), snap.name(to.MasterID))
		case !to.IsMaster():
			return nil, bad("target %s is not a master (%s)", snap.name(m.To), strings.Join(to.Flags, ","))
		case !snap.answered(m.To):
			return nil, fmt.Errorf("target %s does not answer", snap.name(m.To))
		}
		owner := owners[m.Slot]
		switch {
		case owner == "":
			return nil, bad("slot %d has no owner", m.Slot)
		case m.From != "" && m.From != owner:
			if _, known := snap.node(m.From); !known {
				return nil, bad("no node %q in the cluster (nodes: %s)", m.From, snap.list())
			}
			return nil, bad("slot %d is owned by %s, not %s", m.Slot, snap.name(owner), snap.name(m.From))
		case owner == m.To:
			if m.From != "" {
				return nil, bad("From and To are the same node")
			}
			continue
		case !snap.answered(owner):
			return nil, fmt.Errorf("source %s of slot %d does not answer", snap.name(owner), m.Slot)
		}
		from, _ := snap.node(owner)
		out = append(out, pair{slot: m.Slot, src: from, dst: to})
	}
	return out, nil
}

// waves splits pairs into groups in which no node is both a source and a
// target, keeping their order within each group. Finalising a slot bumps
// its target's config epoch above every other; if a node took slot x from
// B and B then took slot y from it before every node had accepted x, a node
// that learnt B's newer epoch first would reject the claim on x and could
// send the old owner an UPDATE that takes x back, dropping its keys
// (redis-cluster-ops.md section 5, #3776). Within a wave every target's
// epoch ends above every source's, and waves are agreed on one by one.
func waves(pairs []pair) [][]pair {
	var out [][]pair
	rest := pairs
	for len(rest) > 0 {
		isSrc, isDst := map[string]bool{}, map[string]bool{}
		var wave, next []pair
		for _, p := range rest {
			s, d := p.src.ID, p.dst.ID
			if isDst[s] || isSrc[d] {
				next = append(next, p)
				continue
			}
			isSrc[s], isDst[d] = true, true
			wave = append(wave, p)
		}
		out = append(out, wave)
		rest = next
	}
	return out
}

func slotList(pairs []pair) string {
	var rs []topology.SlotRange
	for _, p := range pairs {
		rs = append(rs, topology.SlotRange{Start: p.slot, End: p.slot})
	}
	s := topology.FormatRanges(topology.MergeRanges(rs))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
