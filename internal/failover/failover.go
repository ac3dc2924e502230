// Package failover promotes replicas of a running Redis Cluster and waits
// for the cluster to agree on the result. CLUSTER FAILOVER answers OK before
// anything has happened, and a killed master is replaced by a vote nobody
// announces: each operation here returns only when every reachable node
// agrees on the new roles and slot owners and the new master takes writes,
// or fails within its timeout naming the node that does not agree and why.
// It talks only Redis (go-redis through redisconn), so it works on every
// runtime.
package failover

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/topology"
)

// Mode is how the replica takes over (CLUSTER FAILOVER's option).
type Mode int

const (
	// Graceful (no option): the master pauses writes, the replica catches
	// up with its offset, then wins a vote. No acknowledged write is lost.
	// It needs the master to answer.
	Graceful Mode = iota
	// Force: no handshake with the master, still a vote of the masters.
	// Writes the replica had not received yet are lost.
	Force
	// Takeover: no vote; the replica bumps its epoch and claims the slots.
	// It breaks "last failover wins" if the old master is alive elsewhere.
	Takeover
)

func (m Mode) String() string {
	switch m {
	case Force:
		return "force"
	case Takeover:
		return "takeover"
	}
	return "graceful"
}

// option is the CLUSTER FAILOVER argument of the mode ("" for graceful).
func (m Mode) option() string {
	switch m {
	case Force:
		return "FORCE"
	case Takeover:
		return "TAKEOVER"
	}
	return ""
}

// Target names the shard to fail over: build it with ByNode, BySlot or
// ByKey.
type Target struct {
	node string
	slot int
	key  string
	kind int // 0 node, 1 slot, 2 key
}

// ByNode targets a node by host:port, port, node id or unique id prefix.
// A master has its best replica promoted; a replica is promoted itself.
func ByNode(name string) Target { return Target{node: name} }

// BySlot targets the shard that owns slot.
func BySlot(slot int) Target { return Target{slot: slot, kind: 1} }

// ByKey targets the shard that owns key's slot.
func ByKey(key string) Target { return Target{key: key, kind: 2} }

func (t Target) String() string {
	switch t.kind {
	case 1:
		return "slot " + strconv.Itoa(t.slot)
	case 2:
		return fmt.Sprintf("key %q (slot %d)", t.key, topology.HashSlot(t.key))
	}
	return "node " + t.node
}

// DefaultTimeout bounds an operation whose Options.Timeout is zero and
// whose context has no deadline. It covers the 5 s manual-failover window
// and the detection of a dead master with Redis's default 15 s node timeout.
const DefaultTimeout = 30 * time.Second

// Options tune Failover and WaitFailover.
type Options struct {
	// Mode applies to Failover only.
	Mode Mode
	// Timeout bounds the whole operation. Zero: the context's deadline, or
	// DefaultTimeout when it has none.
	Timeout time.Duration
}

func (o Options) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if o.Timeout > 0 {
		return context.WithTimeout(ctx, o.Timeout)
	}
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// Errors a caller can tell apart with errors.Is (a CLI maps ErrUnknownNode
// to a usage error). The full message names the nodes and what to do.
var (
	// ErrUnknownNode: the name matches no node; the message lists the
	// cluster's nodes.
	ErrUnknownNode = errors.New("unknown node")
	// ErrNoReplica: the shard has no replica that can be promoted.
	ErrNoReplica = errors.New("no replica to promote")
	// ErrMasterDown: a graceful failover needs the master, which does not
	// answer or is flagged failed; force mode does not.
	ErrMasterDown = errors.New("master is down")
	// ErrNoVotes: the replica was not elected within the manual-failover
	// window.
	ErrNoVotes = errors.New("replica not elected")
)

// Member names a node.
type Member struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

func member(n topology.Node) Member { return Member{ID: n.ID, Addr: n.Addr} }

func (m Member) String() string { return namer{m.ID: m.Addr}.name(m.ID) }

// Result is a finished failover. Durations count from the call's start.
type Result struct {
	Old   Member               `json:"old_master"`
	New   Member               `json:"new_master"`
	Slots []topology.SlotRange `json:"slots"`
	// Suspected and Failed (WaitFailover only): when a node was first seen
	// flagging the old master fail? and fail (detection).
	Suspected time.Duration `json:"suspected_ns,omitempty"`
	Failed    time.Duration `json:"failed_ns,omitempty"`
	// Elected: when the new master first said it is one (election).
	Elected time.Duration `json:"elected_ns"`
	// Agreed: when every reachable node agreed and the new master took a
	// write (propagation ends): the operation's whole duration.
	Agreed time.Duration `json:"agreed_ns"`
	// Unreachable nodes did not answer at the end and took no part.
	Unreachable []string `json:"unreachable,omitempty"`
	// Carried are open slots (a migration from or to the old master) that
	// were re-pointed at the new master, still open (see carryOpenSlots).
	Carried []int `json:"carried_open_slots,omitempty"`
}

// String gives the outcome and its parts, e.g. "127.0.0.1:7001 (1a2b3c4d)
// -> 127.0.0.1:7004 (5e6f7a8b), slots 0-5460: detection 1.02s (fail? at
// 0.95s), election 0.61s, propagation 12ms; agreed after 1.64s".
func (r *Result) String() string {
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	var b strings.Builder
	fmt.Fprintf(&b, "%s -> %s, slots %s: ", r.Old, r.New, topology.FormatRanges(r.Slots))
	if r.Failed > 0 {
		fmt.Fprintf(&b, "detection %s (fail? at %s), election %s, ", ms(r.Failed), ms(r.Suspected), ms(r.Elected-r.Failed))
	} else {
		fmt.Fprintf(&b, "election %s, ", ms(r.Elected))
	}
	fmt.Fprintf(&b, "propagation %s; agreed after %s", ms(r.Agreed-r.Elected), ms(r.Agreed))
	if len(r.Unreachable) > 0 {
		fmt.Fprintf(&b, " (not answering: %s)", strings.Join(r.Unreachable, ", "))
	}
	if len(r.Carried) > 0 {
		slots := make([]string, len(r.Carried))
		for i, s := range r.Carried {
			slots[i] = fmt.Sprint(s)
		}
		fmt.Fprintf(&b, "; open slots %s carried over to %s, still open", strings.Join(slots, ","), r.New)
	}
	return b.String()
}

// mfTimeout is CLUSTER_MF_TIMEOUT (cluster.h): a manual failover not won
// within it is abandoned by the replica (and the master unpauses).
const mfTimeout = 5 * time.Second

// Failover promotes a replica of target's shard with CLUSTER FAILOVER in
// mode o.Mode and returns when every node that answers agrees on the
// result: the promoted node is a master owning exactly the shard's slots,
// the old master (if it answers) and the shard's other replicas are its
// replicas with their links up and no sync in progress, the cluster is
// healthy by internal/health on every answering node, and the new master
// accepts a write (see Want, Shard). Before sending anything it waits until
// every answering node sees the replica as a replica (the voters must). It
// refuses, changing nothing, with ErrUnknownNode, ErrNoReplica or
// ErrMasterDown; it fails with ErrNoVotes when the replica is not elected
// within the manual-failover window or its claim is reverted at once (a
// replica elected less than 4 x node timeout ago cannot be elected again
// in Redis 7.0), and with ErrNotAgreed when the timeout passes first.
func Failover(ctx context.Context, seeds []string, conn redisconn.Options, target Target, o Options) (*Result, error) {
	start := time.Now()
	ctx, cancel := o.bound(ctx)
	defer cancel()
	p := newPoller(conn, seeds)
	defer p.close()
	pl, rv, err := prepare(ctx, start, p, target, o.Mode)
	if err != nil {
		return nil, err
	}
	cmd := []any{"CLUSTER", "FAILOVER"}
	if opt := o.Mode.option(); opt != "" {
		cmd = append(cmd, opt)
	}
	cctx, ccancel := context.WithTimeout(ctx, conn.CallTimeout())
	err = p.client(rv.addr).Do(cctx, cmd...).Err()
	ccancel()
	if err != nil {
		if strings.Contains(err.Error(), "Master is down or failed") {
			return nil, fmt.Errorf("%w: %s refused CLUSTER FAILOVER (%v): use force mode (--force)", ErrMasterDown, rv.addr, err)
		}
		return nil, fmt.Errorf("node %s: cluster failover: %w", rv.addr, err)
	}
	sent := time.Now()
	if pl.masterDown {
		p.skipNode(pl.master.ID)
	}
	want := pl.want()
	res := &Result{Old: member(pl.master), New: member(pl.replica), Slots: want.Shards[0].Slots}
	b := backoff()
	var last error
	for {
		views, complete := p.round(ctx)
		v := viewOf(views, pl.replica.ID)
		switch {
		case res.Elected == 0 && v != nil && v.me.IsMaster():
			res.Elected = time.Since(start)
			b = backoff() // propagation takes milliseconds: poll closely again
		case res.Elected == 0 && o.Mode != Takeover && time.Since(sent) > mfTimeout+500*time.Millisecond:
			return nil, noVotes(ctx, p, rv.addr, pl, o.Mode, false)
		case res.Elected > 0 && v != nil && v.me.IsReplica():
			return nil, noVotes(ctx, p, rv.addr, pl, o.Mode, true)
		}
		last = errNewNodes
		if res.Elected > 0 {
			if err := carryOpenSlots(ctx, p, views, pl.master.ID, pl.replica.ID, res); err != nil {
				last = err
			}
		}
		if complete && ctx.Err() == nil {
			a, err := agreed(ctx, p, views, want)
			if err == nil {
				res.Agreed = time.Since(start)
				res.Unreachable = a.Unreachable
				return res, nil
			}
			last = err
			p.nudge(ctx, views)
		}
		if werr := b.Wait(ctx); werr != nil || ctx.Err() != nil {
			if res.Elected == 0 {
				last = fmt.Errorf("%s not elected yet, %v after CLUSTER FAILOVER: %w", rv.addr, time.Since(sent).Round(time.Millisecond), last)
			}
			return nil, fmt.Errorf("%s failover of %s -> %s: %w", o.Mode, res.Old, res.New, notAgreed(ctx, start, last))
		}
	}
}

// prepare plans the failover and waits until every node that answers sees
// the chosen replica as a replica of its master: a master votes for no
// node it does not see so (a cluster just formed reports cluster_state:ok
// before every node has learnt every replica), and a failed attempt keeps
// the votes away for 2 x node timeout. In graceful mode it also waits for
// the replica's bus link to its master. Refusals return at once; nothing
// but reads is sent to any node.
func prepare(ctx context.Context, start time.Time, p *poller, target Target, mode Mode) (*plan, *view, error) {
	b := backoff()
	for {
		views := p.read(ctx)
		ref := firstOK(views)
		if ref == nil {
			return nil, nil, fmt.Errorf("failover: no node answered: %w", noAnswer(views))
		}
		pl, err := planFailover(ref, views, target, mode)
		if err != nil {
			return nil, nil, err
		}
		var pr problems
		for _, v := range views {
			if !v.ok() {
				continue
			}
			if r, _ := topology.FindNode(v.nodes, pl.replica.ID); !r.IsReplica() || r.MasterID != pl.master.ID {
				pr.add("%s: sees %s as %s, want slave of %s", v.addr, pl.names.name(pl.replica.ID), roleOf(r, pl.names), pl.names.name(pl.master.ID))
			}
		}
		rv := viewOf(views, pl.replica.ID)
		if m, _ := topology.FindNode(rv.nodes, pl.master.ID); mode == Graceful && !m.Connected {
			// Redis refuses a graceful failover while the link is down.
			pr.add("%s: has no bus link to its master %s", rv.addr, pl.names.name(pl.master.ID))
		}
		if pr.err() == nil && ctx.Err() == nil {
			return pl, rv, nil
		}
		// No nudge here: a CLUSTER MEET recycles bus links (see nudge),
		// and the election needs the replica's links to its master and to
		// the voters. Gossip gets there within cluster-node-timeout/2.
		if b.Wait(ctx) != nil {
			return nil, nil, fmt.Errorf("failover not started (nothing changed): %w", notAgreed(ctx, start, pr.err()))
		}
	}
}

// noVotes explains an election that did not happen (reverted: the replica
// claimed the slots and lost them again at once). It reads the node
// timeout for the retry advice (CONFIG may be disabled: then it says so).
func noVotes(ctx context.Context, p *poller, addr string, pl *plan, mode Mode, reverted bool) error {
	nt := time.Duration(0)
	cctx, cancel := context.WithTimeout(ctx, p.conn.CallTimeout())
	defer cancel()
	if m, err := p.client(addr).ConfigGet(cctx, "cluster-node-timeout").Result(); err == nil {
		if ms, err := strconv.Atoi(m["cluster-node-timeout"]); err == nil {
			nt = time.Duration(ms) * time.Millisecond
		}
	}
	// Redis 7.0 (clusterHandleSlaveFailover): a replica starts a new
	// election only when its last one began more than auth_retry_time =
	// 2 x max(2 x node timeout, 2 s) ago. Within auth_timeout (half that)
	// it "wins" at once with the last election's votes and epoch, which
	// loses to the master's newer epoch (reverted); after it, it waits
	// until auth_retry_time, too late if that is past the window.
	// Voters refuse a replica of the same master for 2 x node timeout after
	// their last vote for one.
	retry, vote := "4 x cluster-node-timeout (at least 4s)", "2 x cluster-node-timeout"
	if nt > 0 {
		retry, vote = (2 * max(2*nt, 2*time.Second)).String(), (2 * nt).String()
	}
	r, m := pl.names.name(pl.replica.ID), pl.names.name(pl.master.ID)
	if reverted {
		return fmt.Errorf("%w: %s claimed %s's slots and lost them again at once to its newer config epoch: "+
			"it won an election less than %s ago, and Redis 7.0 reuses that election's votes and epoch until then; retry after that or promote another replica",
			ErrNoVotes, r, m, retry)
	}
	why := "the masters refused their votes (they vote for no replica of the same master for " + vote + " after a vote)" +
		", or " + r + " held an election itself less than " + retry + " ago"
	if mode == Graceful {
		why += ", or its offset never caught up with the paused master's"
	}
	return fmt.Errorf("%w: %s was not elected master of %s's slots within the %v manual-failover window: %s; retry after that",
		ErrNoVotes, r, m, mfTimeout, why)
}

// plan is a failover decided from the views before anything is sent.
type plan struct {
	master, replica topology.Node
	masterDown      bool     // the master did not answer
	followers       []string // ids that must end up replicas of the promoted node
	names           namer
}

// want is what every node must agree on once the replica has taken over.
func (pl *plan) want() Want {
	slots := topology.MergeRanges(pl.master.Slots)
	if slots == nil {
		slots = []topology.SlotRange{}
	}
	w := Want{Shards: []Shard{{Master: pl.replica.ID, Slots: slots, Replicas: pl.followers}}, Probe: true, OpenSlotPairs: true}
	if pl.masterDown {
		w.Down = []string{pl.master.ID}
	}
	return w
}

// planFailover resolves the target in ref's view and checks the shard can
// fail over in mode; every refusal happens here, before anything changes.
func planFailover(ref *view, views []*view, t Target, mode Mode) (*plan, error) {
	pl := &plan{names: namesOf(views)}
	nodes := authoritative(ref, views)
	var n topology.Node
	switch t.kind {
	case 0:
		var err error
		if n, err = findNode(nodes, t.node); err != nil {
			return nil, err
		}
	default:
		slot := t.slot
		if t.kind == 2 {
			slot = topology.HashSlot(t.key)
		}
		if slot < 0 || slot >= topology.SlotCount {
			return nil, fmt.Errorf("slot %d: out of range 0-%d", slot, topology.SlotCount-1)
		}
		id := topology.SlotOwners(nodes)[slot]
		if id == "" {
			return nil, fmt.Errorf("%s: no node owns it (in %s's view)", t, ref.addr)
		}
		n, _ = topology.FindNode(nodes, id)
	}
	switch {
	case n.IsReplica():
		m, ok := topology.FindNode(nodes, n.MasterID)
		if !ok {
			return nil, fmt.Errorf("replica %s: its master %s is unknown to %s", pl.names.name(n.ID), n.MasterID, ref.addr)
		}
		if viewOf(views, n.ID) == nil {
			return nil, fmt.Errorf("replica %s does not answer: %w", pl.names.name(n.ID), errOf(views, n.Addr))
		}
		pl.master, pl.replica = m, n
	case n.IsMaster():
		if mode == Graceful && viewOf(views, n.ID) == nil {
			return nil, fmt.Errorf("%w: master %s does not answer (%v): a graceful failover needs it; use force mode (--force)", ErrMasterDown, pl.names.name(n.ID), errOf(views, n.Addr))
		}
		r, err := bestReplica(nodes, views, n, mode, pl.names)
		if err != nil {
			return nil, err
		}
		pl.master, pl.replica = n, r
	default:
		return nil, fmt.Errorf("node %s is neither master nor replica (flags %s)", pl.names.name(n.ID), strings.Join(n.Flags, ","))
	}
	m := pl.names.name(pl.master.ID)
	if len(pl.master.Slots) == 0 && mode != Takeover {
		return nil, fmt.Errorf("master %s owns no slots: Redis elects no replica of an empty master; use takeover mode", m)
	}
	pl.masterDown = viewOf(views, pl.master.ID) == nil
	rv := viewOf(views, pl.replica.ID)
	if mode == Graceful {
		if pl.masterDown {
			return nil, fmt.Errorf("%w: master %s does not answer (%v): a graceful failover needs it; use force mode (--force)", ErrMasterDown, m, errOf(views, pl.master.Addr))
		}
		if mn, _ := topology.FindNode(rv.nodes, pl.master.ID); mn.Failed() {
			return nil, fmt.Errorf("%w: %s flags master %s fail: use force mode (--force)", ErrMasterDown, rv.addr, m)
		}
		if link := rv.repl["master_link_status"]; link != "up" {
			return nil, fmt.Errorf("replica %s is not in sync with master %s (master_link_status:%s): a graceful failover would time out; wait for the link, or use force mode (--force), which loses what the replica lacks", rv.addr, m, link)
		}
	}
	if !pl.masterDown {
		pl.followers = append(pl.followers, pl.master.ID)
	}
	for _, x := range nodes {
		if x.IsReplica() && x.MasterID == pl.master.ID && x.ID != pl.replica.ID && viewOf(views, x.ID) != nil {
			pl.followers = append(pl.followers, x.ID)
		}
	}
	return pl, nil
}

// bestReplica picks the replica of master to promote: it answers, is not
// nofailover (cluster-replica-no-failover yes: promote it by naming it), has
// its link up (required in graceful mode, preferred otherwise), and has the
// highest replication offset; ties go to the smaller id, so the choice is
// deterministic.
func bestReplica(nodes []topology.Node, views []*view, master topology.Node, mode Mode, names namer) (topology.Node, error) {
	type cand struct {
		n      topology.Node
		up     bool
		offset int64
	}
	var cands []cand
	var rejected []string
	total := 0
	for _, x := range nodes {
		if !x.IsReplica() || x.MasterID != master.ID {
			continue
		}
		total++
		v := viewOf(views, x.ID)
		switch {
		case v == nil:
			rejected = append(rejected, fmt.Sprintf("%s does not answer (%v)", names.name(x.ID), errOf(views, x.Addr)))
		case x.HasFlag("nofailover"):
			rejected = append(rejected, names.name(x.ID)+" has cluster-replica-no-failover (name it to promote it anyway)")
		case mode == Graceful && v.repl["master_link_status"] != "up":
			rejected = append(rejected, fmt.Sprintf("%s is not in sync (master_link_status:%s)", names.name(x.ID), v.repl["master_link_status"]))
		default:
			off, _ := strconv.ParseInt(v.repl["slave_repl_offset"], 10, 64)
			cands = append(cands, cand{x, v.repl["master_link_status"] == "up", off})
		}
	}
	m := names.name(master.ID)
	if total == 0 {
		return topology.Node{}, fmt.Errorf("%w: master %s (slots %s) has no replica", ErrNoReplica, m, topology.FormatRanges(topology.MergeRanges(master.Slots)))
	}
	if len(cands) == 0 {
		return topology.Node{}, fmt.Errorf("%w: of master %s's replicas, %s", ErrNoReplica, m, strings.Join(rejected, "; "))
	}
	slices.SortFunc(cands, func(a, b cand) int {
		switch {
		case a.up != b.up:
			if a.up {
				return -1
			}
			return 1
		case a.offset != b.offset:
			if a.offset > b.offset {
				return -1
			}
			return 1
		}
		return strings.Compare(a.n.ID, b.n.ID)
	})
	return cands[0].n, nil
}

// findNode resolves a user's node name: host:port, port, full id or a
// unique id prefix. Anything else is ErrUnknownNode listing the nodes.
func findNode(nodes []topology.Node, name string) (topology.Node, error) {
	var byPort, byPrefix []topology.Node
	for _, n := range nodes {
		if n.ID == name || (n.Addr == name && dialable(n)) {
			return n, nil
		}
		if strconv.Itoa(n.Port()) == name {
			byPort = append(byPort, n)
		}
		if len(name) >= 4 && strings.HasPrefix(n.ID, name) {
			byPrefix = append(byPrefix, n)
		}
	}
	for _, m := range [][]topology.Node{byPort, byPrefix} {
		if len(m) == 1 {
			return m[0], nil
		}
	}
	what := "matches no node"
	if len(byPort) > 1 || len(byPrefix) > 1 {
		what = "matches more than one node"
	}
	return topology.Node{}, fmt.Errorf("%w %q (%s); the cluster's nodes: %s", ErrUnknownNode, name, what, listNodes(nodes))
}

// listNodes describes the nodes for an error, sorted by address:
// "127.0.0.1:7001 (1a2b3c4d, master 0-5460), 127.0.0.1:7004 (..., replica of 127.0.0.1:7001)".
func listNodes(nodes []topology.Node) string {
	names := namer{}
	for _, n := range nodes {
		names[n.ID] = n.Addr
	}
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b topology.Node) int { return strings.Compare(a.Addr, b.Addr) })
	parts := make([]string, 0, len(sorted))
	for _, n := range sorted {
		id := n.ID
		if len(id) > 8 {
			id = id[:8]
		}
		role := roleOf(n, names)
		if n.IsMaster() && len(n.Slots) > 0 {
			role += " " + topology.FormatRanges(topology.MergeRanges(n.Slots))
		}
		parts = append(parts, fmt.Sprintf("%s (%s, %s)", n.Addr, id, role))
	}
	return strings.Join(parts, ", ")
}

// errOf is why the node at addr gave no view this round.
func errOf(views []*view, addr string) error {
	for _, v := range views {
		if v.addr == addr && v.err != nil {
			return v.err
		}
	}
	return errors.New("not read")
}
