package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rcluster/rcluster/internal/events"
	"github.com/rcluster/rcluster/internal/migrate"
	"github.com/rcluster/rcluster/internal/reshard"
	"github.com/rcluster/rcluster/internal/topology"
)

// Moving slots with their keys: rcluster migrate (and --finish, --abort),
// reshard, rebalance, and the slot moves of scaling, all through
// internal/migrate, which returns when every node agrees on the new owners
// with no slot left open.

// BadInputError is a slot or node argument that cannot be carried out
// (out of range, a replica as target, --from equal to --to): a usage
// error; nothing was changed.
type BadInputError struct{ Err error }

func (e *BadInputError) Error() string { return e.Err.Error() + "; nothing was changed" }
func (e *BadInputError) Unwrap() error { return e.Err }

func badInput(err error) error {
	if errors.Is(err, migrate.ErrBadMove) || errors.Is(err, reshard.ErrBadInput) {
		return &BadInputError{err}
	}
	return err
}

// MoveOptions tune Migrate, Reshard and Rebalance.
type MoveOptions struct {
	// Hold (Migrate only): stop mid-way, the slots MIGRATING on their
	// source and IMPORTING on the target, part of their keys moved, so
	// that clients get real ASK and TRYAGAIN replies; MigrateFinish
	// completes them, MigrateAbort moves the keys back.
	Hold bool
	// DryRun (Reshard, Rebalance): plan, move nothing.
	DryRun bool
	// Timeout bounds the whole operation (default DefaultOpTimeout).
	Timeout time.Duration
}

func (o MoveOptions) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultOpTimeout
	}
	return context.WithTimeout(ctx, o.Timeout)
}

// moveSlots carries out slot moves with their keys (scaling).
func (c *Cluster) moveSlots(ctx context.Context, moves []reshard.Move) error {
	_, err := c.migrate(ctx, toMigrate(moves), migrate.Options{})
	return err
}

func toMigrate(moves []reshard.Move) []migrate.Move {
	out := make([]migrate.Move, len(moves))
	for i, m := range moves {
		out[i] = migrate.Move(m)
	}
	return out
}

// migrate runs migrate.Migrate on the cluster and records the moves.
func (c *Cluster) migrate(ctx context.Context, moves []migrate.Move, o migrate.Options) (*migrate.Result, error) {
	o.Log = c.log()
	res, err := migrate.Migrate(ctx, c.Spec.Addrs(), c.Conn, moves, o)
	c.recordMoves("migrate", res, err)
	return res, badInput(err)
}

func (c *Cluster) recordMoves(what string, res *migrate.Result, err error) {
	if res == nil && err == nil {
		return
	}
	ev := events.Event{Kind: events.KindSlots, Message: what + ": "}
	if res != nil {
		var slots []topology.SlotRange
		for _, m := range res.Moves {
			slots = append(slots, topology.SlotRange{Start: m.Slot, End: m.Slot})
		}
		ev.Slots = topology.FormatRanges(topology.MergeRanges(slots))
		ev.Message += res.String()
	}
	if err != nil {
		ev.Message += " failed: " + err.Error()
	}
	c.record(ev)
}

// Migrate moves the given slots, with their keys, to the master named to
// (port, host:port or node id), and returns when every node agrees (with
// o.Hold: when the slots are open and part of their keys moved).
func (c *Cluster) Migrate(ctx context.Context, slotList []int, to string, o MoveOptions) (*migrate.Result, error) {
	ctx, cancel := o.bound(ctx)
	defer cancel()
	if err := c.ensureConn(); err != nil {
		return nil, err
	}
	for _, s := range slotList {
		if s < 0 || s >= topology.SlotCount {
			return nil, &BadInputError{fmt.Errorf("slot %d is out of range (0-%d)", s, topology.SlotCount-1)}
		}
	}
	target, err := c.masterID(ctx, to)
	if err != nil {
		return nil, err
	}
	if o.Hold {
		// Moving a slot to its owner is skipped; held, that would leave
		// the caller waiting for -ASK replies that never come.
		view, err := c.liveView(ctx)
		if err != nil {
			return nil, err
		}
		owners := topology.SlotOwners(view)
		for _, s := range slotList {
			if owners[s] == target {
				return nil, &BadInputError{fmt.Errorf("slot %d is already on %s: nothing to hold (pick a slot another master owns)", s, to)}
			}
		}
	}
	moves := make([]migrate.Move, len(slotList))
	for i, s := range slotList {
		moves[i] = migrate.Move{Slot: s, To: target}
	}
	return c.migrate(ctx, moves, migrate.Options{Hold: o.Hold})
}

// MigrateFinish completes every open slot of the cluster (held by
// `migrate --hold`, or left by an interrupted migration: it reads what is
// open from the nodes themselves), never finalising a slot whose source
// still holds keys.
func (c *Cluster) MigrateFinish(ctx context.Context, o MoveOptions) (*migrate.Result, error) {
	ctx, cancel := o.bound(ctx)
	defer cancel()
	if err := c.ensureConn(); err != nil {
		return nil, err
	}
	res, err := migrate.Finish(ctx, c.Spec.Addrs(), c.Conn, migrate.Options{Log: c.log()})
	c.recordMoves("migrate --finish", res, err)
	return res, err
}

// MigrateAbort moves the keys of every open slot back to its source and
// closes the slots.
func (c *Cluster) MigrateAbort(ctx context.Context, o MoveOptions) (*migrate.Result, error) {
	ctx, cancel := o.bound(ctx)
	defer cancel()
	if err := c.ensureConn(); err != nil {
		return nil, err
	}
	res, err := migrate.Abort(ctx, c.Spec.Addrs(), c.Conn, migrate.Options{Log: c.log()})
	c.recordMoves("migrate --abort", res, err)
	return res, err
}

// OpenSlots lists the slots being migrated (open) right now (never nil).
func (c *Cluster) OpenSlots(ctx context.Context) ([]migrate.OpenSlot, error) {
	if err := c.ensureConn(); err != nil {
		return []migrate.OpenSlot{}, err
	}
	open, err := migrate.Open(ctx, c.Spec.Addrs(), c.Conn)
	if open == nil {
		open = []migrate.OpenSlot{}
	}
	return open, err
}

// MovePlan is what Reshard or Rebalance moves (or, dry, would move).
type MovePlan struct {
	Moves  []reshard.Move    `json:"moves"`
	After  []reshard.Master  `json:"after"`
	Result *migrate.Result   `json:"result,omitempty"`
	names  map[string]string // id -> addr
}

// Summary says how many slots go from where to where.
func (p *MovePlan) Summary() string {
	if len(p.Moves) == 0 {
		return "no slot to move"
	}
	pairs := map[string]int{}
	var order []string
	for _, m := range p.Moves {
		k := p.names[m.From] + " -> " + p.names[m.To]
		if pairs[k] == 0 {
			order = append(order, k)
		}
		pairs[k]++
	}
	parts := make([]string, len(order))
	for i, k := range order {
		parts[i] = fmt.Sprintf("%d slots %s", pairs[k], k)
	}
	return strings.Join(parts, ", ")
}

// Reshard moves n slots from the masters named in from (every master but
// to when empty) to the master named to, with redis-cli's meaning
// (reshard.Reshard), many slots at once and large MIGRATE batches.
func (c *Cluster) Reshard(ctx context.Context, from []string, to string, n int, o MoveOptions) (*MovePlan, error) {
	ctx, cancel := o.bound(ctx)
	defer cancel()
	if err := c.ensureConn(); err != nil {
		return nil, err
	}
	target, err := c.masterID(ctx, to)
	if err != nil {
		return nil, err
	}
	var sources []string
	for _, f := range from {
		id, err := c.masterID(ctx, f)
		if err != nil {
			return nil, err
		}
		if id == target {
			return nil, &BadInputError{fmt.Errorf("--from %s is --to itself", f)}
		}
		sources = append(sources, id)
	}
	return c.runPlan(ctx, o, func(ms []reshard.Master) ([]reshard.Move, error) { return reshard.Reshard(ms, sources, target, n) })
}

// RebalanceOptions are `rcluster rebalance`'s, with redis-cli's meaning.
type RebalanceOptions struct {
	// Weights by node name (port, host:port or node id).
	Weights         map[string]float64
	UseEmptyMasters bool
	// Threshold in percent (0: redis-cli's default, 2).
	Threshold float64
}

// Rebalance evens the masters' slots out by weight (reshard.Rebalance).
func (c *Cluster) Rebalance(ctx context.Context, r RebalanceOptions, o MoveOptions) (*MovePlan, error) {
	ctx, cancel := o.bound(ctx)
	defer cancel()
	if err := c.ensureConn(); err != nil {
		return nil, err
	}
	weights := map[string]float64{}
	for name, w := range r.Weights {
		id, err := c.masterID(ctx, name)
		if err != nil {
			return nil, err
		}
		weights[id] = w
	}
	ro := reshard.RebalanceOptions{Weights: weights, UseEmptyMasters: r.UseEmptyMasters, Threshold: r.Threshold}
	return c.runPlan(ctx, o, func(ms []reshard.Master) ([]reshard.Move, error) { return reshard.Rebalance(ms, ro) })
}

// runPlan plans on the live topology and (unless dry) migrates.
func (c *Cluster) runPlan(ctx context.Context, o MoveOptions, plan func([]reshard.Master) ([]reshard.Move, error)) (*MovePlan, error) {
	view, err := c.liveView(ctx)
	if err != nil {
		return nil, err
	}
	masters := reshard.Masters(view)
	moves, err := plan(masters)
	if err != nil {
		return nil, badInput(err)
	}
	after, err := reshard.Apply(masters, moves)
	if err != nil {
		return nil, err
	}
	p := &MovePlan{Moves: moves, After: after, names: map[string]string{}}
	for _, n := range view {
		p.names[n.ID] = n.Addr
	}
	if o.DryRun || len(moves) == 0 {
		return p, nil
	}
	p.Result, err = c.migrate(ctx, toMigrate(moves), migrate.Options{})
	return p, err
}

// masterID resolves a node name to the id of a master of the cluster; a
// replica or an unknown node is a usage error.
func (c *Cluster) masterID(ctx context.Context, name string) (string, error) {
	nodes, err := c.resolve(ctx, []string{name})
	if err != nil {
		return "", err
	}
	view, err := c.liveView(ctx)
	if err != nil {
		return "", err
	}
	me, ok := byAddr(view, nodes[0].Addr())
	if !ok {
		return "", &BadInputError{fmt.Errorf("node %s is not in the cluster's view", nodes[0].Addr())}
	}
	if !me.IsMaster() {
		m, _ := topology.FindNode(view, me.MasterID)
		return "", &BadInputError{fmt.Errorf("node %s is a replica (of %s), not a master", nodes[0].Addr(), m.Addr)}
	}
	return me.ID, nil
}

// ParseSlots reads "S[-E][,S2[-E2]...]" (each 0-16383).
func ParseSlots(s string) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b >= topology.SlotCount || a > b {
			return nil, &BadInputError{fmt.Errorf("--slots %q: %q is not a slot or range within 0-%d", s, part, topology.SlotCount-1)}
		}
		for x := a; x <= b; x++ {
			if !seen[x] {
				seen[x] = true
				out = append(out, x)
			}
		}
	}
	return out, nil
}

// hasOpenSlots reports whether a node shows a slot being migrated.
func (c *Cluster) hasOpenSlots(ctx context.Context) bool {
	open, err := migrate.Open(ctx, c.Spec.Addrs(), c.Conn)
	return err == nil && len(open) > 0
}

// finishOpen completes slot migrations left open (an interrupted migrate,
// reshard, rebalance or scale; a node that died mid-way), as up's part of
// bringing the cluster back to a healthy shape. It never finalises a slot
// whose source still holds keys (migrate.Finish).
func (c *Cluster) finishOpen(ctx context.Context, begin func(string)) error {
	open, err := migrate.Open(ctx, c.Spec.Addrs(), c.Conn)
	if err != nil || len(open) == 0 {
		return nil // not answering yet: the wait that follows says why
	}
	begin(fmt.Sprintf("Completing %d interrupted slot migration(s)", len(open)))
	res, err := migrate.Finish(ctx, c.Spec.Addrs(), c.Conn, migrate.Options{Log: c.log()})
	c.status().End(err == nil)
	c.recordMoves("up: finish interrupted migrations", res, err)
	if err != nil {
		return fmt.Errorf("interrupted slot migrations: %w", err)
	}
	return nil
}
