package rclustertest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rcluster/rcluster/internal/cluster"
	"github.com/rcluster/rcluster/internal/migrate"
	"github.com/rcluster/rcluster/internal/topology"
)

// Moving slots under a running client, as `rcluster migrate`, `reshard`,
// `rebalance` and scaling by editing the spec do: each call returns only
// when every node agrees on the slot map and no slot is open (except what
// HoldMigration opens on purpose), or fails the test. No acknowledged write
// is lost and a cluster client never reads nil for a key that exists.

// MoveResult is a finished slot move.
type MoveResult struct {
	// Slots is the number of slots moved (HoldMigration: opened).
	Slots int
	// Keys is the number of keys MIGRATE moved.
	Keys int64
	// Took is from the call to every node agreeing.
	Took time.Duration
	// Detail is a one-line summary ("100 slots, 2000 keys in 100
	// MIGRATEs, 40ms (agreed in 2ms)").
	Detail string
}

func moved(r *migrate.Result) MoveResult {
	if r == nil {
		return MoveResult{}
	}
	return MoveResult{Slots: len(r.Moves), Keys: r.Keys, Took: r.Elapsed, Detail: r.String()}
}

// SlotOf is the hash slot of key (CRC16 of the key or of its {hash tag},
// mod 16384), as every Redis Cluster client computes it.
func SlotOf(key string) int { return topology.HashSlot(key) }

func (c *Cluster) migrate(slots []int, to string, hold bool) MoveResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	r, err := c.cl.Migrate(ctx, slots, to, cluster.MoveOptions{Hold: hold, Timeout: opTimeout})
	if err != nil {
		c.t.Fatalf("rclustertest: migrate slots %s to %s: %v", slotNames(slots), to, err)
	}
	return moved(r)
}

// MigrateSlots moves slots, with their keys, to the master to (a port,
// host:port or node id).
func (c *Cluster) MigrateSlots(to string, slots ...int) MoveResult {
	c.t.Helper()
	return c.migrate(slots, to, false)
}

// HoldMigration opens slots for migration to the master to and moves about
// half of each slot's keys, then returns with the slots left open
// (MIGRATING on their owner, IMPORTING on to): until FinishMigrations or
// AbortMigrations, a client gets real -ASK replies for moved keys and
// -TRYAGAIN for multi-key commands over keys on both sides. A slot holding
// one key or none has nothing moved yet.
func (c *Cluster) HoldMigration(to string, slots ...int) MoveResult {
	c.t.Helper()
	return c.migrate(slots, to, true)
}

// FinishMigrations completes every open slot (held, or left by an
// interrupted migration).
func (c *Cluster) FinishMigrations() MoveResult {
	c.t.Helper()
	return c.openSlotsOp("finish", c.cl.MigrateFinish)
}

// AbortMigrations moves the keys of every open slot back to its owner and
// closes the slots.
func (c *Cluster) AbortMigrations() MoveResult {
	c.t.Helper()
	return c.openSlotsOp("abort", c.cl.MigrateAbort)
}

func (c *Cluster) openSlotsOp(what string, op func(context.Context, cluster.MoveOptions) (*migrate.Result, error)) MoveResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	r, err := op(ctx, cluster.MoveOptions{Timeout: opTimeout})
	if err != nil {
		c.t.Fatalf("rclustertest: %s migrations: %v", what, err)
	}
	return moved(r)
}

// OpenSlot is a slot being migrated.
type OpenSlot struct {
	Slot int
	// Source and Target are host:port.
	Source, Target string
	// SourceKeys and TargetKeys are the slot's keys on each side.
	SourceKeys, TargetKeys int64
}

// OpenSlots lists the slots open for migration right now, as the nodes
// report them.
func (c *Cluster) OpenSlots() []OpenSlot {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	open, err := c.cl.OpenSlots(ctx)
	if err != nil {
		c.t.Fatalf("rclustertest: open slots: %v", err)
	}
	out := make([]OpenSlot, len(open))
	for i, o := range open {
		out[i] = OpenSlot{Slot: o.Slot, Source: o.Source.Addr, Target: o.Target.Addr, SourceKeys: o.SourceKeys, TargetKeys: o.TargetKeys}
	}
	return out
}

func planned(p *cluster.MovePlan) MoveResult {
	r := moved(p.Result)
	r.Detail = p.Summary()
	if p.Result != nil {
		r.Detail += "; " + p.Result.String()
	}
	return r
}

// Reshard moves n slots to the master to from the masters in from (every
// other master when none is given), with redis-cli's arithmetic.
func (c *Cluster) Reshard(to string, n int, from ...string) MoveResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	p, err := c.cl.Reshard(ctx, from, to, n, cluster.MoveOptions{Timeout: opTimeout})
	if err != nil {
		c.t.Fatalf("rclustertest: reshard %d slots to %s: %v", n, to, err)
	}
	return planned(p)
}

// RebalanceOptions are `rcluster rebalance`'s (redis-cli's meaning).
type RebalanceOptions struct {
	// Weights by node (port, host:port or node id); 1 when not given.
	Weights map[string]float64
	// UseEmptyMasters gives slots to masters that hold none.
	UseEmptyMasters bool
	// Threshold in percent below which a master is left alone (0:
	// redis-cli's 2).
	Threshold float64
}

// Rebalance evens the masters' slots out by weight.
func (c *Cluster) Rebalance(o RebalanceOptions) MoveResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	p, err := c.cl.Rebalance(ctx, cluster.RebalanceOptions{Weights: o.Weights, UseEmptyMasters: o.UseEmptyMasters, Threshold: o.Threshold},
		cluster.MoveOptions{Timeout: opTimeout})
	if err != nil {
		c.t.Fatalf("rclustertest: rebalance: %v", err)
	}
	return planned(p)
}

// Scale reshapes the running cluster to nodes nodes with replicas replicas
// per master, as editing the spec and running `rcluster up` does: new
// nodes are started and joined, slots (with their keys) move to the
// planned masters, replicas follow them, removed nodes hand their slots
// over and are forgotten and stopped. The ports stay one block from the
// first: reserve room with WithMaxNodes. Not for a Shared cluster (the next
// test expects the shape it was made with).
func (c *Cluster) Scale(nodes, replicas int) {
	c.t.Helper()
	if c.shared {
		c.t.Fatalf("rclustertest: Scale on a Shared cluster: start a cluster of the test's own with Start")
	}
	if nodes > c.maxNodes {
		c.t.Fatalf("rclustertest: Scale to %d nodes: only %d ports are reserved; start the cluster with WithMaxNodes(%d)", nodes, c.maxNodes, nodes)
	}
	s := c.spec
	oldPorts, oldReplicas := s.Ports, s.Replicas
	s.Ports, s.Replicas = nil, replicas
	for p := c.base; p < c.base+nodes; p++ {
		s.Ports = append(s.Ports, p)
	}
	if err := s.Validate(); err != nil {
		s.Ports, s.Replicas = oldPorts, oldReplicas
		c.t.Fatalf("rclustertest: Scale(%d, %d):\n%v", nodes, replicas, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout+c.timeout)
	defer cancel()
	if err := c.cl.Up(ctx, cluster.UpOptions{Timeout: opTimeout + c.timeout}); err != nil {
		c.t.Fatalf("rclustertest: Scale(%d, %d) on %s: %v", nodes, replicas, portRange(s.Ports), err)
	}
	c.addrs = s.Addrs()
}

func slotNames(slots []int) string {
	if len(slots) > 8 {
		return fmt.Sprintf("%d..%d (%d slots)", slots[0], slots[len(slots)-1], len(slots))
	}
	parts := make([]string, len(slots))
	for i, s := range slots {
		parts[i] = fmt.Sprint(s)
	}
	return strings.Join(parts, ",")
}
