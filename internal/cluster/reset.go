package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rcluster/rcluster/internal/events"
	"github.com/rcluster/rcluster/internal/failover"
	"github.com/rcluster/rcluster/internal/migrate"
	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/slots"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/topology"
)

// ResetOptions tune Reset.
type ResetOptions struct {
	// KeepData keeps the keys (default: every master is flushed).
	KeepData bool
	// Timeout bounds the whole reset (default DefaultOpTimeout).
	Timeout time.Duration
}

// ResetResult says what Reset had to do.
type ResetResult struct {
	// Started and Resumed (paused or partitioned) are nodes brought back; FailedBack the masters
	// of the spec made masters again; Replicated the replicas moved back to
	// their planned master.
	Started    []string `json:"started,omitempty"`
	Resumed    []string `json:"resumed,omitempty"`
	FailedBack []string `json:"failed_back,omitempty"`
	Replicated []string `json:"replicated,omitempty"`
	// Promoted are planned masters that had become replicas of another
	// shard (a master whose slots were all moved away turns into a replica
	// of the node that took its last slot): reset to empty masters and
	// joined again.
	Promoted []string `json:"promoted,omitempty"`
	// Aborted is the number of open slots (held or interrupted migrations)
	// undone; Moved the number of slots moved back to their planned master.
	Aborted int `json:"aborted,omitempty"`
	Moved   int `json:"moved,omitempty"`
	// Flushed is the number of masters flushed.
	Flushed int           `json:"flushed"`
	Took    time.Duration `json:"took_ns"`
}

// Reset brings a running cluster back to the state right after its first
// up, far cheaper than a new cluster: every stopped, killed or paused node
// running again, no slot open (held or interrupted migrations undone), the
// spec's masters masters again (failing back with graceful failovers, no
// acknowledged write lost; a planned master left a replica of another
// shard after its slots were moved away is reset to an empty master), the
// planned slot split (slots moved back, with their keys when o.KeepData),
// every replica following its planned master, and (unless o.KeepData) no
// keys. It returns when every node agrees the cluster is healthy and in
// that shape.
func (c *Cluster) Reset(ctx context.Context, o ResetOptions) (*ResetResult, error) {
	start := time.Now()
	if o.Timeout <= 0 {
		o.Timeout = DefaultOpTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := c.ensureConn(); err != nil {
		return nil, err
	}
	s := c.Spec
	plan, err := slots.NewPlan(s.Nodes(), s.Replicas)
	if err != nil {
		return nil, err
	}
	prov, err := c.provider(ctx)
	if err != nil {
		return nil, err
	}
	defer prov.Close()
	res := &ResetResult{}

	// 1. Every node running and answering, masters first.
	states, err := prov.Inspect(ctx)
	if err != nil {
		return nil, err
	}
	var stopped []spec.Node
	var resumeErrs []error
	for _, st := range states {
		switch {
		case st.Unproven:
			return nil, fmt.Errorf("node %s: %s; reset does not touch it", st.Node.Addr(), st.Detail)
		case !st.Running:
			stopped = append(stopped, st.Node)
		case st.Paused:
			if err := prov.Resume(ctx, st.Node); err != nil {
				resumeErrs = append(resumeErrs, err)
			}
			res.Resumed = append(res.Resumed, st.Node.Addr())
		case st.Partitioned:
			if err := prov.Heal(ctx, st.Node); err != nil {
				resumeErrs = append(resumeErrs, err)
			}
			res.Resumed = append(res.Resumed, st.Node.Addr())
		}
	}
	if err := errors.Join(resumeErrs...); err != nil {
		return nil, err
	}
	for _, wave := range mastersFirst(s, stopped) {
		errs := make([]error, len(wave))
		var wg sync.WaitGroup
		for i, n := range wave {
			wg.Go(func() { errs[i] = prov.StartNode(ctx, n) })
			res.Started = append(res.Started, n.Addr())
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	// 2. No open slot: migrations held or interrupted are undone (keys
	// back to their source). Before waiting for health: a target still
	// importing from a master that failed over keeps seeing the old master
	// as the slot's owner (Redis does not update a slot it imports), so the
	// cluster cannot become healthy until the slot is closed.
	open, err := migrate.Open(ctx, s.Addrs(), c.Conn)
	if err != nil {
		return nil, fmt.Errorf("reset: %w", err)
	}
	if len(open) > 0 {
		ares, err := migrate.Abort(ctx, s.Addrs(), c.Conn, migrate.Options{Log: c.log()})
		c.recordMoves("reset: migrate --abort", ares, err)
		if err != nil {
			return nil, fmt.Errorf("reset: undo open slots: %w", err)
		}
		res.Aborted = len(open)
	}
	if len(res.Started)+len(res.Resumed)+res.Aborted > 0 {
		if err := slots.WaitReady(ctx, s.Addrs(), len(s.Addrs()), c.Conn); err != nil {
			return nil, fmt.Errorf("reset: nodes back, but the cluster did not become healthy: %w", err)
		}
	}

	// 3. The planned roles: fail back (or reset a planned master that is a
	// replica of another shard to an empty master).
	view, err := c.liveView(ctx)
	if err != nil {
		return nil, err
	}
	plannedMaster := map[string]bool{}
	for _, sh := range plan.Shards {
		plannedMaster[sh.Master.Addr()] = true
	}
	var promote []spec.Node
	for _, sh := range plan.Shards {
		me, ok := byAddr(view, sh.Master.Addr())
		if !ok {
			return nil, fmt.Errorf("reset: node %s is not in the cluster's view", sh.Master.Addr())
		}
		if me.IsMaster() {
			continue
		}
		if m, ok := byID(view, me.MasterID); ok && plannedMaster[m.Addr] {
			// Failing over would take that other shard's slots: this node
			// holds only a copy of them.
			promote = append(promote, sh.Master)
			continue
		}
		// Sequential: concurrent elections compete for the same votes.
		if _, err := failover.Failover(ctx, s.Addrs(), c.Conn, failover.ByNode(sh.Master.Addr()), failover.Options{}); err != nil {
			return nil, fmt.Errorf("reset: fail back to %s: %w", sh.Master.Addr(), err)
		}
		res.FailedBack = append(res.FailedBack, sh.Master.Addr())
	}
	if len(res.FailedBack) > 0 {
		if view, err = c.liveView(ctx); err != nil {
			return nil, err
		}
	}
	if len(promote) > 0 {
		var seed spec.Node
		for _, sh := range plan.Shards {
			if !slices.Contains(promote, sh.Master) {
				seed = sh.Master
				break
			}
		}
		if err := c.promote(ctx, view, promote, seed, s.Nodes(), "reset"); err != nil {
			return nil, fmt.Errorf("reset: %w", err)
		}
		for _, n := range promote {
			res.Promoted = append(res.Promoted, n.Addr())
		}
		if view, err = c.liveView(ctx); err != nil {
			return nil, err
		}
	}

	// 4. No keys (before slots move back: moving empty slots is only
	// SETSLOTs).
	if !o.KeepData {
		n, err := c.flushMasters(ctx, view)
		if err != nil {
			return nil, err
		}
		res.Flushed = n
	}

	// 5. The planned slot split, then every replica on its planned master
	// (a master must give its slots away before it can replicate).
	moves, err := movesToPlan(plan, view)
	if err != nil {
		return nil, err
	}
	for _, phase := range keepLastSlot(view, moves) {
		if len(phase) == 0 {
			continue
		}
		mres, err := c.migrate(ctx, phase, migrate.Options{})
		if err != nil {
			return nil, fmt.Errorf("reset: move slots back to their planned masters: %w", err)
		}
		res.Moved += len(mres.Moves)
	}
	if len(moves) > 0 {
		if view, err = c.liveView(ctx); err != nil {
			return nil, err
		}
	}
	if err := c.replicateAsPlanned(ctx, plan, view, res); err != nil {
		return nil, err
	}
	if err := checkSlotSplit(plan, view); err != nil {
		return nil, err
	}

	// 6. Every node agrees on the planned shape.
	if _, err := failover.WaitConverged(ctx, s.Addrs(), c.Conn, plannedWant(plan, view)); err != nil {
		return nil, fmt.Errorf("reset: %w", err)
	}
	if !o.KeepData {
		if err := c.waitEmpty(ctx); err != nil {
			return nil, err
		}
	}
	res.Took = time.Since(start)
	c.record(events.Event{Kind: events.KindReset, Message: fmt.Sprintf("reset in %s: %s", res.Took.Round(time.Millisecond), res)})
	return res, nil
}

// String says what Reset did: "started 127.0.0.1:7001, failed back to
// 127.0.0.1:7001, flushed 3 masters", or "already in shape".
func (r *ResetResult) String() string {
	var parts []string
	add := func(what string, nodes []string) {
		if len(nodes) > 0 {
			parts = append(parts, what+" "+strings.Join(nodes, " "))
		}
	}
	add("started", r.Started)
	add("resumed", r.Resumed)
	if r.Aborted > 0 {
		parts = append(parts, fmt.Sprintf("undid %d open slots", r.Aborted))
	}
	add("failed back to", r.FailedBack)
	add("reset to empty masters", r.Promoted)
	if r.Moved > 0 {
		parts = append(parts, fmt.Sprintf("moved %d slots back", r.Moved))
	}
	add("re-pointed replicas", r.Replicated)
	if r.Flushed > 0 {
		parts = append(parts, fmt.Sprintf("flushed %d masters", r.Flushed))
	}
	if len(parts) == 0 {
		return "already in shape"
	}
	return strings.Join(parts, ", ")
}

// replicateAsPlanned points every replica whose master is not its planned
// one at the planned master (replica migration can move replicas between
// shards while a master is down).
func (c *Cluster) replicateAsPlanned(ctx context.Context, plan *slots.Plan, view []topology.Node, res *ResetResult) error {
	for _, sh := range plan.Shards {
		m, ok := byAddr(view, sh.Master.Addr())
		if !ok {
			return fmt.Errorf("reset: node %s is not in the cluster's view", sh.Master.Addr())
		}
		for _, r := range sh.Replicas {
			rv, ok := byAddr(view, r.Addr())
			if !ok {
				return fmt.Errorf("reset: node %s is not in the cluster's view", r.Addr())
			}
			if rv.IsReplica() && rv.MasterID == m.ID {
				continue
			}
			cl := c.Conn.Node(r.Addr())
			err := cl.ClusterReplicate(ctx, m.ID).Err()
			cl.Close()
			if err != nil {
				return fmt.Errorf("reset: node %s: CLUSTER REPLICATE %s: %w", r.Addr(), m.Addr, err)
			}
			res.Replicated = append(res.Replicated, r.Addr())
		}
	}
	return nil
}

// movesToPlan are the moves that give every planned master exactly its
// planned slots, from whichever master owns each now.
func movesToPlan(plan *slots.Plan, view []topology.Node) ([]migrate.Move, error) {
	owner := map[int]string{}
	for _, n := range view {
		if n.IsMaster() {
			for _, r := range n.Slots {
				for sl := r.Start; sl <= r.End; sl++ {
					owner[sl] = n.ID
				}
			}
		}
	}
	var moves []migrate.Move
	for _, sh := range plan.Shards {
		m, ok := byAddr(view, sh.Master.Addr())
		if !ok || !m.IsMaster() {
			return nil, fmt.Errorf("reset: planned master %s is not a master in the cluster's view", sh.Master.Addr())
		}
		for sl := sh.Slots.Start; sl <= sh.Slots.End; sl++ {
			switch o := owner[sl]; {
			case o == "":
				return nil, fmt.Errorf("reset: slot %d is served by no master; run `rcluster up` to repair the cluster first", sl)
			case o != m.ID:
				moves = append(moves, migrate.Move{Slot: sl, From: o, To: m.ID})
			}
		}
	}
	return moves, nil
}

// keepLastSlot splits moves into two phases so that no master gives away
// its last slot while it still has slots to receive: Redis turns a master
// left without slots into a replica of the node that took the last one
// (cluster-allow-replica-migration), and a replica takes no slot ("Please
// use SETSLOT only with masters"). Such a master keeps one of the slots it
// gives for the second phase, when it holds what it received. (Scaling
// cannot hit this: a planned master never gives all its slots there.)
func keepLastSlot(view []topology.Node, moves []migrate.Move) [2][]migrate.Move {
	owned, gives, receives := map[string]int{}, map[string]int{}, map[string]bool{}
	for _, n := range view {
		if n.IsMaster() {
			owned[n.ID] = topology.CountSlots(n.Slots)
		}
	}
	for _, m := range moves {
		gives[m.From]++
		receives[m.To] = true
	}
	var out [2][]migrate.Move
	held := map[string]bool{}
	for _, m := range moves {
		if receives[m.From] && gives[m.From] == owned[m.From] && !held[m.From] {
			held[m.From] = true
			out[1] = append(out[1], m)
			continue
		}
		out[0] = append(out[0], m)
	}
	return out
}

// checkSlotSplit asserts that the planned masters own exactly the planned
// slots (after movesToPlan's moves).
func checkSlotSplit(plan *slots.Plan, view []topology.Node) error {
	for _, sh := range plan.Shards {
		m, _ := byAddr(view, sh.Master.Addr())
		got := topology.MergeRanges(m.Slots)
		if len(got) != 1 || got[0] != sh.Slots {
			return fmt.Errorf("reset: master %s owns slots %s, the plan says %d-%d",
				sh.Master.Addr(), topology.FormatRanges(got), sh.Slots.Start, sh.Slots.End)
		}
	}
	return nil
}

// flushMasters empties every master of view (FLUSHALL SYNC; replicas
// follow through replication, which plannedWant waits for) and says how
// many it flushed.
func (c *Cluster) flushMasters(ctx context.Context, view []topology.Node) (int, error) {
	var masters []string
	for _, n := range view {
		if n.IsMaster() && slices.Contains(c.Spec.Addrs(), n.Addr) {
			masters = append(masters, n.Addr)
		}
	}
	errs := make([]error, len(masters))
	var wg sync.WaitGroup
	for i, a := range masters {
		wg.Go(func() {
			cl := c.Conn.Node(a)
			defer cl.Close()
			if err := cl.Do(ctx, "FLUSHALL", "SYNC").Err(); err != nil {
				errs[i] = fmt.Errorf("reset: node %s: FLUSHALL: %w", a, err)
			}
		})
	}
	wg.Wait()
	return len(masters), errors.Join(errs...)
}

// waitEmpty waits until no node holds a key (replicas apply the masters'
// FLUSHALL through replication).
func (c *Cluster) waitEmpty(ctx context.Context) error {
	addrs := c.Spec.Addrs()
	b := poll.Backoff{Min: 2 * time.Millisecond, Max: 50 * time.Millisecond}
	for {
		var full []string
		for _, a := range addrs {
			cl := c.Conn.Node(a)
			n, err := cl.DBSize(ctx).Result()
			cl.Close()
			if err != nil || n > 0 {
				full = append(full, fmt.Sprintf("%s (%d keys, %v)", a, n, err))
			}
		}
		if len(full) == 0 {
			return nil
		}
		if err := b.Wait(ctx); err != nil {
			return fmt.Errorf("reset: keys left after FLUSHALL on %v: %w", full, err)
		}
	}
}

// plannedWant is the planned shape, as the convergence check wants it:
// each planned master owning exactly its slots with its planned replicas
// linked, and accepting a write.
func plannedWant(plan *slots.Plan, view []topology.Node) failover.Want {
	id := func(n spec.Node) string {
		v, _ := byAddr(view, n.Addr())
		return v.ID
	}
	var w failover.Want
	for _, sh := range plan.Shards {
		fs := failover.Shard{Master: id(sh.Master), Slots: []topology.SlotRange{sh.Slots}}
		for _, r := range sh.Replicas {
			fs.Replicas = append(fs.Replicas, id(r))
		}
		w.Shards = append(w.Shards, fs)
	}
	w.Probe = true
	return w
}
