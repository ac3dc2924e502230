package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/rcluster/rcluster/internal/events"
	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/provider"
	"github.com/rcluster/rcluster/internal/reshard"
	"github.com/rcluster/rcluster/internal/slots"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/statedir"
	"github.com/rcluster/rcluster/internal/topology"
)

// Scaling by editing the spec: a formed cluster whose spec now lists other
// ports and/or another replica count (same host, runtime and security) is
// changed in place by up instead of refused: new nodes are started and
// joined, slots move (with their keys) from the masters that stop being
// masters to the planned ones, replicas follow their planned masters, and
// removed nodes are forgotten by every node and stopped. A replica that
// the new spec makes a master (say replicas 1 -> 0 on the same ports) is
// forgotten by every node, reset to an empty master with a new node id
// and met again; its master keeps the keys, and slots then move to it.

// scalable reports whether want differs from the saved, formed cluster
// only in what up can change on a running cluster: ports and replicas, with
// every remaining node at the address it had.
func scalable(saved, want statedir.State) bool {
	if !saved.Formed || saved.Runtime != want.Runtime || saved.Host != want.Host ||
		(saved.Security != "" && saved.Security != want.Security) || len(saved.Ports) == 0 || len(want.Ports) == 0 {
		return false
	}
	if slices.Equal(saved.Ports, want.Ports) && saved.Replicas == want.Replicas {
		return false
	}
	was := map[int]string{}
	for i, p := range saved.Ports {
		if i < len(saved.Nodes) {
			was[p] = saved.Nodes[i]
		}
	}
	for i, p := range want.Ports {
		if a, ok := was[p]; ok && i < len(want.Nodes) && a != want.Nodes[i] {
			return false // docker network: bridge renumbers nodes by position
		}
	}
	return true
}

// ErrScaleUnsupported: the spec's new shape needs a change scaling does
// not make safely (a replica to be made a master whose own master is not
// serving its keys); nothing was changed.
var ErrScaleUnsupported = errors.New("scaling cannot make this change")

// ScalePlan is what up does to reshape a running cluster.
type ScalePlan struct {
	// From and To are the saved and the new shape.
	FromPorts, ToPorts       []int
	FromReplicas, ToReplicas int
	// Add are started and joined; Remove drained, forgotten and stopped.
	Add, Remove []spec.Node
	// Promote are replicas (in the saved shape) the new spec makes
	// masters: forgotten, reset to empty masters and joined again.
	Promote []string
	// Masters are the planned masters; Replicas the planned replica ->
	// master pairs (addresses).
	Masters  []string
	Replicas map[string]string
}

func (c *Cluster) planScale(saved *statedir.State) (*ScalePlan, error) {
	s := c.Spec
	plan, err := slots.NewPlan(s.Nodes(), s.Replicas)
	if err != nil {
		return nil, err
	}
	p := &ScalePlan{FromPorts: saved.Ports, ToPorts: slices.Clone(s.Ports), FromReplicas: saved.Replicas, ToReplicas: s.Replicas,
		Replicas: map[string]string{}}
	for _, n := range s.Nodes() {
		if !slices.Contains(saved.Ports, n.Port) {
			p.Add = append(p.Add, n)
		}
	}
	p.Remove = c.dropped(saved)
	if was, err := slots.NewPlan((&spec.Spec{Host: s.Host, Ports: saved.Ports, Runtime: s.Runtime, ExternalNodes: s.ExternalNodes}).Nodes(), saved.Replicas); err == nil {
		wasReplica := map[string]bool{}
		for _, sh := range was.Shards {
			for _, r := range sh.Replicas {
				wasReplica[r.Addr()] = true
			}
		}
		for _, sh := range plan.Shards {
			if wasReplica[sh.Master.Addr()] {
				p.Promote = append(p.Promote, sh.Master.Addr())
			}
		}
	}
	for _, sh := range plan.Shards {
		p.Masters = append(p.Masters, sh.Master.Addr())
		for _, r := range sh.Replicas {
			p.Replicas[r.Addr()] = sh.Master.Addr()
		}
	}
	return p, nil
}

// Write prints the plan for `up --dry-run`.
func (p *ScalePlan) Write(w io.Writer) {
	fmt.Fprintf(w, "# Scale: ports %s -> %s, replicas %d -> %d\n", formatPorts(p.FromPorts), formatPorts(p.ToPorts), p.FromReplicas, p.ToReplicas)
	names := func(ns []spec.Node) string {
		if len(ns) == 0 {
			return "none"
		}
		out := make([]string, len(ns))
		for i, n := range ns {
			out[i] = n.Addr()
		}
		return strings.Join(out, " ")
	}
	fmt.Fprintf(w, "start and join: %s\n", names(p.Add))
	if len(p.Promote) > 0 {
		fmt.Fprintf(w, "replicas made empty masters (forgotten, reset, joined again; their masters keep the keys): %s\n", strings.Join(p.Promote, " "))
	}
	fmt.Fprintf(w, "masters (slots spread evenly over them, keys moved with their slots): %s\n", strings.Join(p.Masters, " "))
	for _, m := range p.Masters {
		var reps []string
		for r, rm := range p.Replicas {
			if rm == m {
				reps = append(reps, r)
			}
		}
		slices.Sort(reps)
		if len(reps) > 0 {
			fmt.Fprintf(w, "  %s replicas: %s\n", m, strings.Join(reps, " "))
		}
	}
	fmt.Fprintf(w, "drain, forget on every node, stop: %s\n", names(p.Remove))
}

// PlanScale says what up would do to reshape the running cluster to the
// spec (nil when up would not scale: nothing saved, or nothing to change).
func (c *Cluster) PlanScale() (*ScalePlan, error) {
	saved, err := c.readState()
	if err != nil || saved == nil || !scalable(*saved, c.wantState()) {
		return nil, err
	}
	return c.planScale(saved)
}

// scale reshapes the running cluster from saved to the spec (see the top
// of this file); Up calls it with the state dir locked and claimed.
func (c *Cluster) scale(ctx context.Context, saved, state *statedir.State, begin func(string)) error {
	st, s := c.status(), c.Spec
	plan, err := c.planScale(saved)
	if err != nil {
		return err
	}
	plan.Write(c.log())

	// 1. Every node of the old and the new shape running: what is missing
	// (stopped, or new) is started, paused or partitioned nodes restored.
	// (A scale interrupted after the join is simply run again: MEET and
	// the moves are idempotent.)
	union := *s
	union.Ports = slices.Clone(saved.Ports)
	for _, p := range s.Ports {
		if !slices.Contains(union.Ports, p) {
			union.Ports = append(union.Ports, p)
		}
	}
	uc := &Cluster{Spec: &union, Conn: c.Conn, Status: c.Status, Log: c.Log}
	prov, err := uc.provider(ctx)
	if err != nil {
		return err
	}
	defer prov.Close()
	states, err := prov.Inspect(ctx)
	if err != nil {
		return err
	}
	var missing []spec.Node
	for _, ns := range states {
		switch {
		case ns.Unproven:
			return fmt.Errorf("scale: node %s: %s", ns.Node.Addr(), ns.Detail)
		case !ns.Running:
			missing = append(missing, ns.Node)
		case ns.Paused:
			err = prov.Resume(ctx, ns.Node)
		case ns.Partitioned:
			err = prov.Heal(ctx, ns.Node)
		}
		if err != nil {
			return err
		}
	}
	if len(missing) > 0 {
		begin("Preflight checks")
		_, perr := prov.Preflight(ctx, missing)
		st.End(perr == nil)
		if perr != nil {
			return perr
		}
		begin(fmt.Sprintf("Writing configs for %d nodes", len(union.Ports)))
		perr = prov.Prepare(ctx)
		st.End(perr == nil)
		if perr != nil {
			return perr
		}
		begin(prov.StartStep(len(missing)))
		serr := startWaves(mastersFirst(&union, missing), new([]spec.Node), func(w []spec.Node) error { return prov.Start(ctx, w) })
		st.End(serr == nil)
		if serr != nil {
			return serr
		}
	}
	old := *s
	old.Ports = slices.Clone(saved.Ports)

	// 2. Introduce the new nodes.
	all := append(s.Nodes(), plan.Remove...)
	begin(fmt.Sprintf("Joining %d new node(s): waiting until every node knows every node", len(plan.Add)))
	jerr := c.join(ctx, old.Nodes()[0], plan.Add, all)
	st.End(jerr == nil)
	if jerr != nil {
		return jerr
	}

	// 3. Planned masters that are replicas now become empty masters.
	view, err := c.viewOf(ctx, all)
	if err != nil {
		return err
	}
	var promote []spec.Node
	for _, n := range s.Nodes() {
		if me, _ := byAddr(view, n.Addr()); slices.Contains(plan.Masters, n.Addr()) && me.IsReplica() {
			promote = append(promote, n)
		}
	}
	if len(promote) > 0 {
		begin(fmt.Sprintf("Making %d replica(s) empty masters: forget, reset, join again", len(promote)))
		perr := c.promote(ctx, view, promote, old.Nodes()[0], all, "scaling")
		st.End(perr == nil)
		if perr != nil {
			return perr
		}
		if view, err = c.viewOf(ctx, all); err != nil {
			return err
		}
	}

	// 4. Slots (and keys) to the planned masters, evenly.
	moves, err := scaleMoves(view, plan)
	if err != nil {
		return err
	}
	if len(moves) > 0 {
		begin(fmt.Sprintf("Moving %d slots with their keys", len(moves)))
		merr := c.moveSlots(ctx, moves)
		st.End(merr == nil)
		if merr != nil {
			return merr
		}
		if view, err = c.viewOf(ctx, all); err != nil {
			return err
		}
	}

	// 5. Replicas follow their planned masters.
	begin("Pointing replicas at their planned masters")
	perr := c.replicatePlanned(ctx, view, plan)
	st.End(perr == nil)
	if perr != nil {
		return perr
	}

	// 6. Removed nodes: stopped, then forgotten by every node.
	if len(plan.Remove) > 0 {
		begin(fmt.Sprintf("Removing %d node(s)", len(plan.Remove)))
		rerr := c.remove(ctx, prov, view, plan.Remove, state)
		st.End(rerr == nil)
		if rerr != nil {
			return rerr
		}
	}

	begin("Waiting for the cluster to become healthy")
	werr := slots.WaitReady(ctx, s.Addrs(), len(s.Addrs()), c.Conn)
	st.End(werr == nil)
	if werr != nil {
		return fmt.Errorf("scale: cluster did not become healthy: %w", werr)
	}
	if err := c.saveFormed(state); err != nil {
		return err
	}
	c.record(events.Event{Kind: events.KindUp, Message: fmt.Sprintf("scaled: ports %s -> %s, replicas %d -> %d; %d slots moved",
		formatPorts(plan.FromPorts), formatPorts(plan.ToPorts), plan.FromReplicas, plan.ToReplicas, len(moves))})
	desc := ""
	if np, err := c.provider(ctx); err == nil {
		desc = " " + np.Describe()
		np.Close()
	}
	st.Infof("Cluster %q scaled: %d nodes, %d masters%s", s.Name, len(s.Ports), len(plan.Masters), desc)
	return nil
}

// join has every new node meet the seed, then waits until every node of
// all knows every other (no handshake left).
func (c *Cluster) join(ctx context.Context, seed spec.Node, add, all []spec.Node) error {
	for _, n := range add {
		cl := c.Conn.Node(n.Addr())
		err := cl.ClusterMeet(ctx, seed.Host, fmt.Sprint(seed.Port)).Err()
		cl.Close()
		if err != nil {
			return fmt.Errorf("scale: node %s: CLUSTER MEET %s: %w", n.Addr(), seed.Addr(), err)
		}
	}
	if err := c.waitKnown(ctx, all, all); err != nil {
		return err
	}
	// A new master reports cluster_state:ok only ~2 s after it started
	// (CLUSTER_WRITABLE_DELAY) and bus links settle after the handshakes:
	// slots move only into a healthy cluster.
	addrs := make([]string, len(all))
	for i, n := range all {
		addrs[i] = n.Addr()
	}
	if err := slots.WaitReady(ctx, addrs, len(addrs), c.Conn); err != nil {
		return fmt.Errorf("scale: joined nodes did not become healthy: %w", err)
	}
	return nil
}

// waitKnown polls until every node of who lists exactly the nodes of
// known, none in handshake.
func (c *Cluster) waitKnown(ctx context.Context, who, known []spec.Node) error {
	want := map[string]bool{}
	for _, n := range known {
		want[n.Addr()] = true
	}
	b := poll.Backoff{}
	for {
		var short []string
		for _, n := range who {
			v, err := c.viewOf(ctx, []spec.Node{n})
			if err != nil {
				short = append(short, err.Error())
				continue
			}
			got := 0
			for _, x := range v {
				if x.HasFlag("handshake") || x.HasFlag("noaddr") {
					continue
				}
				if want[x.Addr] {
					got++
				}
			}
			if got != len(want) || len(v) != len(want) {
				short = append(short, fmt.Sprintf("%s knows %d of %d nodes", n.Addr(), got, len(want)))
			}
		}
		if len(short) == 0 {
			return nil
		}
		if err := b.Wait(ctx); err != nil {
			return fmt.Errorf("scale: nodes do not all know each other: %s: %w", strings.Join(short, "; "), err)
		}
	}
}

// viewOf is the first answering node's CLUSTER NODES among nodes.
func (c *Cluster) viewOf(ctx context.Context, nodes []spec.Node) ([]topology.Node, error) {
	var errs []error
	for _, n := range nodes {
		cl := c.Conn.Node(n.Addr())
		txt, err := cl.ClusterNodes(ctx).Result()
		cl.Close()
		if err == nil {
			return topology.ParseNodes(txt)
		}
		errs = append(errs, fmt.Errorf("node %s: %w", n.Addr(), err))
	}
	return nil, fmt.Errorf("no node answered: %w", errors.Join(errs...))
}

// scaleMoves plans the slot moves: every master with slots that is not a
// planned master gives them all away (reshard.Drain), then the planned
// masters are evened out (reshard.Fill).
func scaleMoves(view []topology.Node, plan *ScalePlan) ([]reshard.Move, error) {
	masters := reshard.Masters(view)
	var leaving, joining []string
	var keep []reshard.Master
	for _, m := range masters {
		planned := slices.Contains(plan.Masters, m.Addr)
		switch {
		case !planned && !m.Empty():
			leaving = append(leaving, m.ID)
		case planned && m.Empty():
			joining = append(joining, m.ID)
		}
		if planned || !m.Empty() {
			keep = append(keep, m)
		}
	}
	moves, err := reshard.Drain(keep, leaving)
	if err != nil {
		return nil, err
	}
	after, err := reshard.Apply(keep, moves)
	if err != nil {
		return nil, err
	}
	var stay []reshard.Master
	for _, m := range after {
		if !slices.Contains(leaving, m.ID) {
			stay = append(stay, m)
		}
	}
	fill, err := reshard.Fill(stay, joining)
	if err != nil {
		return nil, err
	}
	return collapse(append(moves, fill...)), nil
}

// collapse turns a sequence of moves into one move per slot, from its
// first owner to its last (Fill may move again a slot Drain just moved):
// slots are migrated in parallel, so no slot may appear twice.
func collapse(moves []reshard.Move) []reshard.Move {
	at := map[int]int{}
	var out []reshard.Move
	for _, m := range moves {
		if i, ok := at[m.Slot]; ok {
			out[i].To = m.To
			continue
		}
		at[m.Slot] = len(out)
		out = append(out, m)
	}
	return slices.DeleteFunc(out, func(m reshard.Move) bool { return m.From == m.To })
}

// replicatePlanned points each planned replica at its planned master.
func (c *Cluster) replicatePlanned(ctx context.Context, view []topology.Node, plan *ScalePlan) error {
	for r, m := range plan.Replicas {
		rv, ok := byAddr(view, r)
		mv, mok := byAddr(view, m)
		if !ok || !mok {
			return fmt.Errorf("scale: %s or %s is not in the cluster's view", r, m)
		}
		if rv.IsReplica() && rv.MasterID == mv.ID {
			continue
		}
		cl := c.Conn.Node(r)
		err := cl.ClusterReplicate(ctx, mv.ID).Err()
		cl.Close()
		if err != nil {
			return fmt.Errorf("scale: node %s: CLUSTER REPLICATE %s: %w", r, m, err)
		}
	}
	return nil
}

// remove stops the removed nodes (they hold no slot any more), has every
// remaining node forget them (CLUSTER FORGET keeps a node out for 60 s:
// all nodes are told at once, well within it), waits until none knows them,
// and deletes their data dir (when rcluster created it: state records it as
// a tree) so the port starts fresh if it comes back (their keys are gone
// with their slots; a removed replica's data is a copy).
func (c *Cluster) remove(ctx context.Context, prov provider.Provider, view []topology.Node, gone []spec.Node, state *statedir.State) error {
	for _, n := range gone {
		if me, ok := byAddr(view, n.Addr()); ok && me.IsMaster() && len(me.Slots) > 0 {
			return fmt.Errorf("scale: node %s still owns slots %s; not removing it", n.Addr(), topology.FormatRanges(me.Slots))
		}
	}
	if err := prov.Undo(ctx, gone); err != nil {
		return fmt.Errorf("scale: stop removed nodes: %w", err)
	}
	stay := c.Spec.Nodes()
	var wg sync.WaitGroup
	errs := make([]error, len(stay))
	for i, n := range stay {
		wg.Go(func() {
			cl := c.Conn.Node(n.Addr())
			defer cl.Close()
			for _, g := range gone {
				if me, ok := byAddr(view, g.Addr()); ok {
					if err := cl.ClusterForget(ctx, me.ID).Err(); err != nil && !strings.Contains(err.Error(), "Unknown node") {
						errs[i] = fmt.Errorf("node %s: CLUSTER FORGET %s: %w", n.Addr(), g.Addr(), err)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("scale: %w", err)
	}
	if err := c.waitKnown(ctx, stay, stay); err != nil {
		return err
	}
	for _, g := range gone {
		dd := c.Spec.DataDir(g.Port)
		if rel, err := filepath.Rel(c.Spec.Dir, dd); err == nil && slices.Contains(state.Trees, filepath.ToSlash(rel)) {
			_ = os.RemoveAll(dd)
		}
	}
	return nil
}

// promote makes each replica of nodes an empty master of the cluster:
// every other node forgets it (CLUSTER FORGET bans its id for 60 s, so
// gossip cannot bring it back), it is reset (CLUSTER RESET HARD: a new
// id, epochs zero, its copy of the data dropped) and it meets seed again.
// Forgetting first matters: a node reset while the others still know its
// old id leaves them a "noaddr" ghost of it. Each replica's master must be
// up, since the replica's copy of the keys is dropped. why is for the
// event log ("scaling", "reset").
func (c *Cluster) promote(ctx context.Context, view []topology.Node, nodes []spec.Node, seed spec.Node, all []spec.Node, why string) error {
	resetting := map[string]string{} // addr -> old id
	for _, n := range nodes {
		me, _ := byAddr(view, n.Addr())
		m, ok := byID(view, me.MasterID)
		if !ok || !m.IsMaster() || m.Trouble() != "" {
			return fmt.Errorf("%w: %s is a replica that must become a master, but its master %.8s is not a serving master (%s %s); "+
				"nothing was reset", ErrScaleUnsupported, n.Addr(), me.MasterID, m.Addr, strings.Join(m.Flags, ","))
		}
		resetting[n.Addr()] = me.ID
	}
	if resetting[seed.Addr()] != "" {
		for _, x := range all {
			if resetting[x.Addr()] == "" {
				seed = x
				break
			}
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i, n := range all {
		if resetting[n.Addr()] != "" {
			continue
		}
		wg.Go(func() {
			cl := c.Conn.Node(n.Addr())
			defer cl.Close()
			for addr, id := range resetting {
				if err := cl.ClusterForget(ctx, id).Err(); err != nil && !strings.Contains(err.Error(), "Unknown node") {
					errs[i] = errors.Join(errs[i], fmt.Errorf("node %s: CLUSTER FORGET %s (%s): %w", n.Addr(), addr, id, err))
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("scale: %w", err)
	}
	for _, n := range nodes {
		cl := c.Conn.Node(n.Addr())
		err := cl.ClusterResetHard(ctx).Err()
		cl.Close()
		if err != nil {
			return fmt.Errorf("scale: node %s: CLUSTER RESET HARD: %w", n.Addr(), err)
		}
		c.record(events.Event{Kind: events.KindRole, Node: n.Addr(), NodeID: resetting[n.Addr()],
			Message: fmt.Sprintf("replica %s reset to an empty master (%s): forgotten by every node, joining again with a new id", n.Addr(), why)})
	}
	return c.join(ctx, seed, nodes, all)
}
