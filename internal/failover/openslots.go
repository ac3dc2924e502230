package failover

import (
	"context"
	"fmt"
	"maps"
	"slices"
)

// Open slots across a failover.
//
// A slot being migrated is MIGRATING on its source and IMPORTING on its
// target, states Redis keeps on those two masters only: a replica does not
// have them. When the source or the target fails over, the promoted replica
// knows nothing of the migration:
//   - source replaced: the target goes on importing from the old master,
//     and (Redis does not update a slot it is importing) keeps seeing it as
//     the slot's owner, so it reports cluster_state:fail once the old master
//     is failed, and the new master serves the slot without ASK: a key
//     already moved reads as missing there;
//   - target replaced: the source goes on sending -ASK to the old target.
//
// carryOpenSlots moves such a migration over to the new master, as it
// stood (keys moved stay moved, a held migration stays held): the new
// source MIGRATING to the target, the target IMPORTING from it and seeing
// it as the owner; or the new target IMPORTING from the source, the source
// MIGRATING to it. Migrate's Finish or Abort then complete or undo it as
// any other open slot.

// carryOpenSlots re-points, on the nodes of views, every open slot whose
// other side is old at its replacement, nw (already master in its own
// view), and adds each slot it re-pointed to res.Carried. Errors are
// returned for the caller to retry on its next round (a node may not yet
// see nw as master).
func carryOpenSlots(ctx context.Context, p *poller, views []*view, old, nw string, res *Result) error {
	nv := viewOf(views, nw)
	if nv == nil || !nv.me.IsMaster() {
		return nil
	}
	carried := func(slot int) {
		if !slices.Contains(res.Carried, slot) {
			res.Carried = append(res.Carried, slot)
		}
	}
	do := func(addr string, args ...any) error {
		cctx, cancel := context.WithTimeout(ctx, p.conn.CallTimeout())
		defer cancel()
		if err := p.client(addr).Do(cctx, args...).Err(); err != nil {
			return fmt.Errorf("node %s: %v: %w", addr, args, err)
		}
		return nil
	}
	for _, v := range views {
		if !v.ok() || v.me.ID == old || v.me.ID == nw || !v.me.IsMaster() {
			continue
		}
		for _, slot := range sortedKeys(v.me.Importing) {
			if v.me.Importing[slot] != old || !nv.me.Owns(slot) {
				continue
			}
			// The new source first: from here on it redirects a missing
			// key with -ASK to the target instead of reading it as nil.
			if err := do(nv.addr, "CLUSTER", "SETSLOT", slot, "MIGRATING", v.me.ID); err != nil {
				return err
			}
			if err := do(v.addr, "CLUSTER", "SETSLOT", slot, "NODE", nw); err != nil {
				return err
			}
			if err := do(v.addr, "CLUSTER", "SETSLOT", slot, "IMPORTING", nw); err != nil {
				return err
			}
			carried(slot)
		}
		for _, slot := range sortedKeys(v.me.Migrating) {
			if v.me.Migrating[slot] != old || !v.me.Owns(slot) {
				continue
			}
			if err := do(nv.addr, "CLUSTER", "SETSLOT", slot, "IMPORTING", v.me.ID); err != nil {
				return err
			}
			if err := do(v.addr, "CLUSTER", "SETSLOT", slot, "MIGRATING", nw); err != nil {
				return err
			}
			carried(slot)
		}
	}
	return nil
}

// checkOpenSlots accepts open slots only as consistent pairs, as a held
// migration leaves them: the source owns the slot (in its own view) and
// has it MIGRATING to the target, which has it IMPORTING from the source;
// one side alone, or a side pointing at a node that is not the other's
// counterpart, is a problem. (The health definition counts any open slot
// as unhealthy; a failover or a node fault under a held migration must
// still be able to agree.)
func checkOpenSlots(pr *problems, ok []*view, names namer) {
	for _, v := range ok {
		if !v.me.IsMaster() {
			continue // clients are redirected to the master; Redis ignores a replica's open slots
		}
		for _, slot := range sortedKeys(v.me.Migrating) {
			to := v.me.Migrating[slot]
			switch t := viewOf(ok, to); {
			case !v.me.Owns(slot):
				pr.add("%s has slot %d migrating to %s but does not own it", v.addr, slot, names.name(to))
			case t == nil:
				pr.add("%s has slot %d migrating to %s, which does not answer", v.addr, slot, names.name(to))
			case t.me.Importing[slot] != v.me.ID:
				pr.add("%s has slot %d migrating to %s, which is not importing it from %s", v.addr, slot, names.name(to), v.addr)
			}
		}
		for _, slot := range sortedKeys(v.me.Importing) {
			from := v.me.Importing[slot]
			switch s := viewOf(ok, from); {
			case s == nil:
				pr.add("%s has slot %d importing from %s, which does not answer", v.addr, slot, names.name(from))
			case s.me.Migrating[slot] != v.me.ID:
				pr.add("%s has slot %d importing from %s, which is not migrating it to %s", v.addr, slot, names.name(from), v.addr)
			}
		}
	}
}

func sortedKeys(m map[int]string) []int { return slices.Sorted(maps.Keys(m)) }
