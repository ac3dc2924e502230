package migrate

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/failover"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/topology"
)

// OpenSlot is a slot some master has MIGRATING or IMPORTING, as the
// cluster itself describes it (nothing is saved elsewhere).
type OpenSlot struct {
	Slot int `json:"slot"`
	// Source is the node the slot's keys move from (its owner, or the
	// node still MIGRATING it); Target the node they move to.
	Source failover.Member `json:"source"`
	Target failover.Member `json:"target"`
	// Migrating: the source has the slot MIGRATING to the target.
	// Importing: the target has it IMPORTING.
	Migrating bool `json:"migrating"`
	Importing bool `json:"importing"`
	// Finalised: the target already owns the slot; the source and the
	// other masters have not all been told.
	Finalised bool `json:"finalised"`
	// SourceKeys and TargetKeys are COUNTKEYSINSLOT on each side.
	SourceKeys int64 `json:"source_keys"`
	TargetKeys int64 `json:"target_keys"`
	// Problem says why Finish and Abort leave the slot alone ("": they
	// can complete or undo it).
	Problem string `json:"problem,omitempty"`
}

// String is one line: "slot 100: 127.0.0.1:7001 (1a2b3c4d) -> 127.0.0.1:7002
// (5e6f7a8b), migrating+importing, keys 3 -> 2".
func (s OpenSlot) String() string {
	var st []string
	if s.Migrating {
		st = append(st, "migrating")
	}
	if s.Importing {
		st = append(st, "importing")
	}
	if s.Finalised {
		st = append(st, "finalised on the target")
	}
	out := fmt.Sprintf("slot %d: %s -> %s, %s, keys %d -> %d", s.Slot, s.Source, s.Target, strings.Join(st, "+"), s.SourceKeys, s.TargetKeys)
	if s.Problem != "" {
		out += ": " + s.Problem
	}
	return out
}

// Open lists the cluster's open slots, with their source and target and
// the keys each side holds, read from every reachable master (CLUSTER
// NODES' [slot->-id] and [slot-<-id] entries, COUNTKEYSINSLOT).
func Open(ctx context.Context, seeds []string, conn redisconn.Options) ([]OpenSlot, error) {
	e := newEngine(conn, Options{}.withDefaults())
	defer e.close()
	_, plans, err := e.survey(ctx, seeds)
	if err != nil {
		return nil, fmt.Errorf("open slots: %w", err)
	}
	out := make([]OpenSlot, len(plans))
	for i, p := range plans {
		src := p.src
		if src.ID == "" {
			src = p.origin
		}
		out[i] = OpenSlot{
			Slot: p.slot, Source: failover.Member{ID: src.ID, Addr: src.Addr}, Target: failover.Member{ID: p.dst.ID, Addr: p.dst.Addr},
			Migrating: p.migrating, Importing: p.importing, Finalised: p.claimed,
			SourceKeys: p.srcKeys, TargetKeys: p.dstKeys, Problem: p.problem,
		}
	}
	return out, nil
}

// plan is what one open slot needs, from analyse.
type plan struct {
	slot int
	// dst is the target. src is the node to empty and finalise: the
	// slot's owner, or (once the target owns it) the node still
	// MIGRATING it; zero when there is none. origin is where the slot
	// came from (Abort returns it there): src, or the source the target
	// imports from.
	src, dst, origin topology.Node
	// claimed: the target owns the slot in its own view.
	claimed              bool
	migrating, importing bool
	// stable are other masters importing the slot with no key of it:
	// closed with SETSLOT STABLE.
	stable           []topology.Node
	srcKeys, dstKeys int64
	problem          string
}

// survey reads the cluster and analyses every open slot.
func (e *engine) survey(ctx context.Context, seeds []string) (*snapshot, []plan, error) {
	snap, err := e.read(ctx, seeds)
	if err != nil {
		return nil, nil, err
	}
	slots := snap.openSlots()
	if len(slots) == 0 {
		return snap, nil, nil
	}
	masters := snap.masters()
	counts, err := e.counts(ctx, masters, slots)
	if err != nil {
		return nil, nil, err
	}
	owners := snap.owners()
	plans := make([]plan, len(slots))
	for i, s := range slots {
		plans[i] = analyse(s, masters, counts, snap.ref.nodes, owners[s])
	}
	return snap, plans, nil
}

// analyse decides, from what the answering masters say of themselves
// (masters: their own myself lines), their key counts (keys[id][slot]),
// a reference view (ref, for nodes that do not answer) and the owner most
// views agree on (refOwner), how an open slot is completed. Cases:
//
//   - MIGRATING on the source and IMPORTING on the target (normal, or
//     interrupted while moving keys): re-open (idempotent) and continue.
//   - IMPORTING on the target only, the owner not MIGRATING (interrupted
//     between the two SETSLOTs, or the source failed over and its replica
//     took the slot without the migrating state): the owner that claims
//     the slot is the source; re-open and continue. Keys on the target
//     are the ones moved before.
//   - MIGRATING on the source only (the target lost its IMPORTING state,
//     e.g. it failed over: its promoted replica, which holds the keys it
//     received, becomes the target): re-open and continue.
//   - The target already owns the slot (interrupted between the target's
//     SETSLOT NODE and the source's): finalise the rest, once the node
//     still MIGRATING it is seen to hold no key of it.
//   - No answering node claims the slot, the target imports it and no
//     other master holds a key of it: finalise on the target.
//
// Anything else is a problem left alone: several nodes migrating it, or
// importing it with none migrating; two claimants; a master that neither
// sends nor receives it holding keys of it; an owner that does not
// answer (its keys cannot be checked); a target that already owns the
// slot while the source still holds keys of it (finalised by someone
// else too early; the source deletes them when it hears the claim).
func analyse(slot int, masters []topology.Node, keys map[string]map[int]int64, ref []topology.Node, refOwner string) plan {
	p := plan{slot: slot}
	byID := make(map[string]topology.Node, len(masters))
	for _, m := range masters {
		byID[m.ID] = m
	}
	name := func(id string) string {
		short := id
		if len(short) > 8 {
			short = short[:8]
		}
		if n, ok := byID[id]; ok {
			return n.Addr + " (" + short + ")"
		}
		if n, ok := topology.FindNode(ref, id); ok {
			return n.Addr + " (" + short + ")"
		}
		return short
	}
	names := func(ns []topology.Node) string {
		var s []string
		for _, n := range ns {
			s = append(s, name(n.ID))
		}
		return strings.Join(s, ", ")
	}
	count := func(id string) int64 { return keys[id][slot] }
	// master resolves a node id to an answering master: itself, or the
	// master it now replicates (a failover moved its role, and its data).
	master := func(id string) (topology.Node, bool) {
		if m, ok := byID[id]; ok {
			return m, true
		}
		if n, ok := topology.FindNode(ref, id); ok && n.IsReplica() {
			m, ok := byID[n.MasterID]
			return m, ok
		}
		return topology.Node{}, false
	}
	fail := func(format string, a ...any) plan {
		p.problem = fmt.Sprintf(format, a...)
		return p
	}
	var mig, imp, claim []topology.Node
	for _, m := range masters {
		if _, ok := m.Migrating[slot]; ok {
			mig = append(mig, m)
		}
		if _, ok := m.Importing[slot]; ok {
			imp = append(imp, m)
		}
		if m.Owns(slot) {
			claim = append(claim, m)
		}
	}
	var dstID, originID string
	switch {
	case len(mig) > 1:
		return fail("migrating on several nodes: %s", names(mig))
	case len(mig) == 1:
		dstID, originID = mig[0].Migrating[slot], mig[0].ID
	case len(imp) == 1:
		dstID, originID = imp[0].ID, imp[0].Importing[slot]
	case len(imp) > 1:
		return fail("importing on several nodes (%s) and migrating on none", names(imp))
	default:
		return fail("not open")
	}
	dst, ok := master(dstID)
	if !ok {
		return fail("its target %s does not answer as a master", name(dstID))
	}
	p.dst = dst
	_, p.importing = dst.Importing[slot]
	p.origin, _ = master(originID)
	for _, m := range imp {
		if m.ID == dst.ID {
			continue
		}
		if n := count(m.ID); n > 0 {
			return fail("%s imports it too and holds %d keys of it", name(m.ID), n)
		}
		p.stable = append(p.stable, m)
	}
	var others []topology.Node
	for _, c := range claim {
		if c.ID == dst.ID {
			p.claimed = true
		} else {
			others = append(others, c)
		}
	}
	switch {
	case len(others) > 1 || (p.claimed && len(others) > 0):
		return fail("claimed by several nodes: %s", names(claim))
	case len(others) == 1:
		p.src = others[0]
	default:
		if !p.claimed {
			if refOwner != "" && refOwner != dst.ID {
				if _, up := byID[refOwner]; !up {
					return fail("its owner %s does not answer: its keys cannot be checked", name(refOwner))
				}
			}
			if !p.importing {
				return fail("no node claims it and %s does not import it", name(dst.ID))
			}
		}
		if len(mig) == 1 && mig[0].ID != dst.ID {
			p.src = mig[0]
		}
	}
	if p.src.ID != "" {
		_, p.migrating = p.src.Migrating[slot]
		p.srcKeys = count(p.src.ID)
		if p.origin.ID == "" {
			p.origin = p.src
		}
	}
	p.dstKeys = count(dst.ID)
	for _, m := range masters {
		if m.ID == dst.ID || m.ID == p.src.ID {
			continue
		}
		if n := count(m.ID); n > 0 {
			return fail("%s holds %d keys of it but neither sends nor receives it", name(m.ID), n)
		}
	}
	if p.src.ID != "" && !p.src.Owns(slot) && p.srcKeys > 0 {
		return fail("%s no longer owns it but still holds %d keys of it: not finalising (finalised elsewhere before the source was empty)", name(p.src.ID), p.srcKeys)
	}
	return p
}

// forward is the step that completes a plan.
func (p plan) forward() pair {
	if p.claimed || p.src.ID == "" || !p.src.Owns(p.slot) {
		return pair{slot: p.slot, src: p.src, dst: p.dst, step: stepFinalise}
	}
	return pair{slot: p.slot, src: p.src, dst: p.dst, step: stepMove}
}

// closeStrays sends SETSLOT STABLE to the extra importers of the plans
// (they hold no key of the slot: analyse checked).
func (e *engine) closeStrays(ctx context.Context, plans []plan) error {
	for _, p := range plans {
		for _, n := range p.stable {
			if err := e.call(ctx, n.Addr, "CLUSTER", "SETSLOT", p.slot, "STABLE").Err(); err != nil {
				return fmt.Errorf("slot %d: node %s: setslot stable: %w", p.slot, n.Addr, err)
			}
			e.logf("slot %d: closed on %s, which imported it with no key of it", p.slot, n.Addr)
		}
	}
	return nil
}

// runWaves runs pairs in waves (see waves), waiting between waves until
// every node sees the owners the wave gave.
func (e *engine) runWaves(ctx context.Context, seeds []string, res *Result, pairs []pair) error {
	ws := waves(pairs)
	for i, w := range ws {
		if err := e.run(ctx, res, w); err != nil {
			return err
		}
		if i < len(ws)-1 {
			if err := e.waitOwners(ctx, seeds, ownersOf(w)); err != nil {
				return fmt.Errorf("wave %d of %d: %w", i+1, len(ws), err)
			}
		}
	}
	return nil
}

func problems(plans []plan) error {
	var pr []string
	for _, p := range plans {
		if p.problem != "" {
			pr = append(pr, fmt.Sprintf("slot %d: %s", p.slot, p.problem))
		}
	}
	if len(pr) == 0 {
		return nil
	}
	if len(pr) > 8 {
		pr = append(pr[:8], fmt.Sprintf("and %d more", len(pr)-8))
	}
	return fmt.Errorf("%w: %s", ErrCannotFix, strings.Join(pr, "; "))
}

// Finish completes every open slot of the cluster, forward: the keys left
// on the source move to the target and the slot is finalised (see analyse
// for every state it handles, and what it leaves alone with
// ErrCannotFix). It needs no saved state, so it also repairs a migration
// interrupted by a cancelled Migrate, a SIGKILLed rcluster or a node that
// died. It never finalises a slot whose source holds keys of it. It
// returns when every reachable node agrees and the cluster is healthy
// (or, with slots it left alone, when the others are finalised everywhere).
func Finish(ctx context.Context, seeds []string, conn redisconn.Options, o Options) (*Result, error) {
	start := time.Now()
	o = o.withDefaults()
	e := newEngine(conn, o)
	defer e.close()
	res := &Result{}
	defer func() { res.Elapsed = time.Since(start) }()
	snap, plans, err := e.survey(ctx, seeds)
	if err != nil {
		return res, fmt.Errorf("finish: %w", err)
	}
	e.masters = snap.masters()
	var pairs []pair
	var ok []plan
	for _, p := range plans {
		if p.problem == "" {
			ok = append(ok, p)
			pairs = append(pairs, p.forward())
		}
	}
	if err := e.closeStrays(ctx, ok); err != nil {
		return res, fmt.Errorf("finish: %w", err)
	}
	if err := e.runWaves(ctx, seeds, res, pairs); err != nil {
		return res, fmt.Errorf("finish: %w", err)
	}
	if perr := problems(plans); perr != nil {
		if err := e.waitOwners(ctx, seeds, ownersOf(pairs)); err != nil {
			return res, fmt.Errorf("finish: %w; %w", err, perr)
		}
		return res, fmt.Errorf("finish: %w", perr)
	}
	if err := e.agree(ctx, seeds, res, ownersOf(pairs)); err != nil {
		return res, fmt.Errorf("finish: %w", err)
	}
	return res, nil
}

// Abort undoes every open slot: its keys end on the node the slot came
// from (its origin), which owns it again, and no slot is open.
//
// A target cannot simply send its keys back while the source is
// MIGRATING: the source answers the RESTORE-ASKING of a key it does not
// hold with ASK (seen on 7.0.15), and once the source is made STABLE it
// serves every key it does not hold as missing, so clients would read nil
// for the keys still on the target. Abort therefore completes the
// migration forward (Finish's path) and then migrates the slot back: both
// legs are ordinary migrations, under which no acknowledged write is lost
// and no read of an existing key returns nil.
//
// That needs the origin to keep a slot while the slot is away (a master
// that loses its last slot becomes a replica of the node that took it,
// cluster-allow-replica-migration). An origin whose every slot is open
// returns all but one first, then the last one. An origin whose only slot
// is the open one gets its keys back in place (see returnKeys): exact for
// the keys, but while it runs a client may read nil for a key not yet
// returned. Slots analyse cannot handle are left alone (ErrCannotFix).
func Abort(ctx context.Context, seeds []string, conn redisconn.Options, o Options) (*Result, error) {
	start := time.Now()
	o = o.withDefaults()
	e := newEngine(conn, o)
	defer e.close()
	res := &Result{}
	defer func() { res.Elapsed = time.Since(start) }()
	snap, plans, err := e.survey(ctx, seeds)
	if err != nil {
		return res, fmt.Errorf("abort: %w", err)
	}
	e.masters = snap.masters()
	for i, p := range plans {
		if p.problem == "" && (p.origin.ID == "" || p.origin.ID == p.dst.ID) {
			plans[i].problem = "the node it came from is not known (or became a replica of its target): use Finish"
		}
	}
	first, second, inPlace := abortGroups(plans, snap)
	var ok []plan
	for _, g := range [][]plan{first, second, inPlace} {
		ok = append(ok, g...)
	}
	if err := e.closeStrays(ctx, ok); err != nil {
		return res, fmt.Errorf("abort: %w", err)
	}
	owners := map[int]string{}
	for _, g := range [][]plan{first, second} {
		var fwd, back []pair
		for _, p := range g {
			fwd = append(fwd, p.forward())
			back = append(back, pair{slot: p.slot, src: p.dst, dst: p.origin, step: stepMove})
			owners[p.slot] = p.origin.ID
		}
		if err := e.runWaves(ctx, seeds, res, fwd); err != nil {
			return res, fmt.Errorf("abort (moving forward before moving back): %w", err)
		}
		if err := e.runWaves(ctx, seeds, res, back); err != nil {
			return res, fmt.Errorf("abort (moving back): %w", err)
		}
	}
	var ret []pair
	for _, p := range inPlace {
		ret = append(ret, pair{slot: p.slot, src: p.origin, dst: p.dst, step: stepReturn})
		owners[p.slot] = p.origin.ID
	}
	if err := e.run(ctx, res, ret); err != nil {
		return res, fmt.Errorf("abort: %w", err)
	}
	// The forward leg's moves are in res.Moves too; keep only the net
	// outcome: each slot back on its origin.
	res.Moves = res.Moves[:0]
	for _, g := range [][]plan{first, second, inPlace} {
		for _, p := range g {
			res.Moves = append(res.Moves, Move{Slot: p.slot, From: p.dst.ID, To: p.origin.ID})
		}
	}
	if perr := problems(plans); perr != nil {
		if err := e.waitOwners(ctx, seeds, owners); err != nil {
			return res, fmt.Errorf("abort: %w; %w", err, perr)
		}
		return res, fmt.Errorf("abort: %w", perr)
	}
	if err := e.agree(ctx, seeds, res, owners); err != nil {
		return res, fmt.Errorf("abort: %w", err)
	}
	return res, nil
}

// abortGroups splits the plans Abort can do: first are moved forward and
// back at once; second (one slot per origin whose every slot is open) once
// first is back; inPlace are returned in place (their origin owns only
// that slot, so moving it away would make the origin a replica).
func abortGroups(plans []plan, snap *snapshot) (first, second, inPlace []plan) {
	byOrigin := map[string][]plan{}
	var order []string
	for _, p := range plans {
		if p.problem != "" {
			continue
		}
		if _, seen := byOrigin[p.origin.ID]; !seen {
			order = append(order, p.origin.ID)
		}
		byOrigin[p.origin.ID] = append(byOrigin[p.origin.ID], p)
	}
	for _, id := range order {
		ps := byOrigin[id]
		origin, _ := snap.node(id)
		var held []plan // open slots the origin still owns
		for _, p := range ps {
			if origin.Owns(p.slot) {
				held = append(held, p)
			}
		}
		keeps := topology.CountSlots(origin.Slots) - len(held)
		switch {
		case keeps > 0 || len(held) == 0:
			first = append(first, ps...)
		case len(held) == 1 && len(ps) == 1:
			inPlace = append(inPlace, ps...)
		default:
			// It keeps the last held slot while the others travel; by the
			// time that one goes, the others are back.
			last := held[len(held)-1]
			for _, p := range ps {
				if p.slot != last.slot {
					first = append(first, p)
				}
			}
			second = append(second, last)
		}
	}
	sort.Slice(first, func(i, j int) bool { return first[i].slot < first[j].slot })
	return first, second, inPlace
}

// dropShadowed deletes from holder (an importing target, with ASKING) each
// of keys that owner also holds: the owner's copy was written after the
// owner stopped migrating the slot, so it is the newer one.
func (e *engine) dropShadowed(ctx context.Context, slot int, owner, holder topology.Node, keys []string) error {
	cctx, cancel := context.WithTimeout(ctx, e.conn.CallTimeout())
	defer cancel()
	pipe := e.client(owner.Addr).Pipeline()
	exists := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		exists[i] = pipe.Exists(cctx, k)
	}
	if _, err := pipe.Exec(cctx); err != nil {
		return fmt.Errorf("slot %d: node %s: exists: %w", slot, owner.Addr, err)
	}
	tp := e.client(holder.Addr).Pipeline()
	dels := 0
	for i, k := range keys {
		if exists[i].Val() == 1 {
			tp.Do(cctx, "ASKING")
			tp.Del(cctx, k)
			dels++
		}
	}
	if dels == 0 {
		return nil
	}
	if _, err := tp.Exec(cctx); err != nil {
		return fmt.Errorf("slot %d: node %s: asking del: %w", slot, holder.Addr, err)
	}
	e.logf("slot %d: %d keys on %s were newer on %s: dropped the target's copy", slot, dels, holder.Addr, owner.Addr)
	return nil
}
