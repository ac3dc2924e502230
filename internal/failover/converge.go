package failover

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rcluster/rcluster/internal/health"
	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/topology"
)

// Shard is what must hold for one master on every reachable node.
type Shard struct {
	// Master is the id of the node every view must show as a master, and
	// whose own INFO replication must say role:master. It must answer.
	Master string
	// Slots, when non-nil, are exactly the slots every view must show it
	// owning (empty and non-nil: none).
	Slots []topology.SlotRange
	// Replicas are ids every view must show as `slave <Master>`; each must
	// answer, and its own INFO replication must say role:slave,
	// master_link_status:up and master_sync_in_progress:0.
	Replicas []string
}

// Want is an outcome every reachable node must agree on: the nodes that
// answer must be healthy by rcluster's one definition (internal/health:
// cluster_state:ok, no failing or handshaking peer, bus links up, replica
// links up, the same slot owners and roles everywhere, every slot served,
// unique epochs), where a node that does not answer at all (refused, timed
// out) takes no part and may be flagged by the others; one that answers
// with an error (LOADING, NOAUTH) is not healthy. On top of that, each of
// Shards must hold.
type Want struct {
	Shards []Shard
	// Down are ids or addresses of nodes known to be down (killed, stopped,
	// paused). They are never read (a paused node would hold every round
	// for a whole call timeout) and may carry any flag.
	Down []string
	// Probe also requires each shard's master to accept a write: a key
	// rcluster:probe:{...} in one of its slots is set (with a 10 s expiry)
	// and deleted directly on it. No user key is touched.
	Probe bool
	// OpenSlotPairs accepts open slots (a migration held or running) when
	// they are consistent pairs (checkOpenSlots) instead of counting any
	// open slot as unhealthy: what a failover or a node fault under a held
	// migration must agree in. Slot moves themselves want none left.
	OpenSlotPairs bool
}

// Agreement describes the round that showed agreement.
type Agreement struct {
	// Nodes answered and agree. Unreachable did not answer at all and are
	// not part of the agreement (Want.Down nodes are in neither).
	Nodes, Unreachable []string
	// Rounds is how many polling rounds it took.
	Rounds int
}

// ErrNotAgreed: the deadline passed before every reachable node agreed.
// The error names the nodes that did not agree and why.
var ErrNotAgreed = errors.New("nodes do not agree")

// Converged reads every node reachable from seeds once and reports whether
// they agree on want. A nil error means they do; otherwise the error names
// each node that does not agree and why.
func Converged(ctx context.Context, seeds []string, conn redisconn.Options, want Want) (*Agreement, error) {
	p := newPoller(conn, seeds)
	defer p.close()
	for _, d := range want.Down {
		p.skipNode(d)
	}
	views := p.read(ctx)
	return agreed(ctx, p, views, want)
}

// WaitConverged polls (5-50 ms apart) until every reachable node agrees on
// want, or fails when ctx ends with ErrNotAgreed and the last round's
// problems. While a replica's new role is not known everywhere it nudges
// the gossip along (see nudge): it sends CLUSTER MEET to that replica.
func WaitConverged(ctx context.Context, seeds []string, conn redisconn.Options, want Want) (*Agreement, error) {
	p := newPoller(conn, seeds)
	defer p.close()
	for _, d := range want.Down {
		p.skipNode(d)
	}
	start := time.Now()
	b := backoff()
	for rounds := 1; ; rounds++ {
		views, complete := p.round(ctx)
		err := errNewNodes
		if complete {
			var a *Agreement
			if a, err = agreed(ctx, p, views, want); err == nil {
				a.Rounds = rounds
				return a, nil
			}
			p.nudge(ctx, views)
		}
		if werr := b.Wait(ctx); werr != nil || ctx.Err() != nil {
			return nil, notAgreed(ctx, start, err)
		}
	}
}

// backoff is the polling rhythm of this package: first polls 5 ms apart (a
// graceful failover settles in tens of milliseconds), never more than 50 ms
// apart (each round is a few pipelined reads per node).
func backoff() poll.Backoff {
	return poll.Backoff{Min: 5 * time.Millisecond, Max: 50 * time.Millisecond}
}

// errNewNodes: a round read fewer nodes than its answers named.
var errNewNodes = errors.New("the last round found nodes it had not read")

func notAgreed(ctx context.Context, start time.Time, last error) error {
	return fmt.Errorf("%w after %v (%w): %w", ErrNotAgreed, time.Since(start).Round(time.Millisecond), context.Cause(ctx), last)
}

// agreed checks one round against want, then (only when everything else
// agrees) probes the masters.
func agreed(ctx context.Context, p *poller, views []*view, want Want) (*Agreement, error) {
	if err := evaluate(views, want); err != nil {
		return nil, err
	}
	if want.Probe {
		if err := probe(ctx, p, views, want.Shards); err != nil {
			return nil, err
		}
	}
	a := &Agreement{Rounds: 1}
	for _, v := range views {
		if v.ok() {
			a.Nodes = append(a.Nodes, v.addr)
		} else {
			a.Unreachable = append(a.Unreachable, v.addr)
		}
	}
	return a, nil
}

// problems collects what disagrees, each naming the node.
type problems []string

func (p *problems) add(format string, a ...any) { *p = append(*p, fmt.Sprintf(format, a...)) }

// maxProblems bounds an error message: a cluster in trouble can produce
// one problem per node pair.
const maxProblems = 8

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	if len(p) > maxProblems {
		return fmt.Errorf("%s; and %d more", strings.Join(p[:maxProblems], "; "), len(p)-maxProblems)
	}
	return errors.New(strings.Join(p, "; "))
}

// namer turns node ids into "addr (id prefix)" for messages.
type namer map[string]string

func namesOf(views []*view) namer {
	m := namer{}
	for _, v := range views {
		for _, n := range v.nodes {
			if dialable(n) {
				m[n.ID] = n.Addr
			}
		}
	}
	return m
}

func (m namer) name(id string) string {
	short := id
	if len(short) > 8 {
		short = short[:8]
	}
	if a := m[id]; a != "" {
		return a + " (" + short + ")"
	}
	return short
}

// evaluate is the pure part of the agreement check (no I/O), on one round.
func evaluate(views []*view, want Want) error {
	var pr problems
	names := namesOf(views)
	var answers []health.Answer
	var ok []*view
	silent := map[string]bool{} // names health gives the nodes that did not answer
	answering := map[string]bool{}
	for _, v := range views {
		switch {
		case v.ok():
			ok = append(ok, v)
			answering[v.me.ID] = true
			answers = append(answers, health.Answer{Addr: v.addr, Info: v.info, Repl: v.repl, Nodes: v.nodes})
		case !v.unreachable:
			answers = append(answers, health.Answer{Addr: v.addr, Err: v.err})
		}
	}
	if len(ok) == 0 {
		pr.add("no node answered")
		return pr.err()
	}
	for _, v := range ok {
		for _, n := range v.nodes {
			if !answering[n.ID] {
				silent[n.Addr] = true
			}
		}
	}
	// A node that does not answer is not part of the agreement.
	criteria := health.Criteria()
	if want.OpenSlotPairs {
		criteria = allBut(health.OpenSlots)
		checkOpenSlots(&pr, ok, names)
	}
	for _, f := range health.WithoutDown(health.Assess(answers, 0, criteria...), func(a string) bool { return silent[a] }) {
		pr.add("%s", f)
	}
	for _, s := range want.Shards {
		checkShard(&pr, ok, s, names)
	}
	return pr.err()
}

func allBut(c health.Criterion) []health.Criterion {
	return slices.DeleteFunc(health.Criteria(), func(x health.Criterion) bool { return x == c })
}

func checkShard(pr *problems, ok []*view, s Shard, names namer) {
	if mv := viewOf(ok, s.Master); mv == nil {
		pr.add("master %s does not answer", names.name(s.Master))
	} else if role := mv.repl["role"]; role != "master" {
		pr.add("%s: INFO replication says role:%s, want master", mv.addr, role)
	}
	for _, v := range ok {
		n, found := topology.FindNode(v.nodes, s.Master)
		switch {
		case !found:
			pr.add("%s: does not know %s", v.addr, names.name(s.Master))
		case !n.IsMaster():
			pr.add("%s: sees %s as %s, want master", v.addr, names.name(s.Master), roleOf(n, names))
		case s.Slots != nil && !sameSlots(n.Slots, s.Slots):
			pr.add("%s: sees %s owning [%s], want [%s]", v.addr, names.name(s.Master),
				topology.FormatRanges(topology.MergeRanges(n.Slots)), topology.FormatRanges(topology.MergeRanges(s.Slots)))
		}
		for _, r := range s.Replicas {
			rn, found := topology.FindNode(v.nodes, r)
			switch {
			case !found:
				pr.add("%s: does not know %s", v.addr, names.name(r))
			case !rn.IsReplica() || rn.MasterID != s.Master:
				pr.add("%s: sees %s as %s, want slave of %s", v.addr, names.name(r), roleOf(rn, names), names.name(s.Master))
			}
		}
	}
	for _, r := range s.Replicas {
		rv := viewOf(ok, r)
		switch {
		case rv == nil:
			pr.add("replica %s does not answer", names.name(r))
		case rv.repl["role"] != "slave":
			pr.add("%s: INFO replication says role:%s, want slave", rv.addr, rv.repl["role"])
		case rv.repl["master_link_status"] != "up":
			pr.add("%s: replication link to its master is %s", rv.addr, rv.repl["master_link_status"])
		case rv.repl["master_sync_in_progress"] != "0":
			pr.add("%s: full sync from its master in progress", rv.addr)
		}
	}
}

func sameSlots(a, b []topology.SlotRange) bool {
	return topology.FormatRanges(topology.MergeRanges(a)) == topology.FormatRanges(topology.MergeRanges(b))
}

func roleOf(n topology.Node, names namer) string {
	switch {
	case n.IsReplica():
		return "slave of " + names.name(n.MasterID)
	case n.IsMaster():
		return "master"
	}
	return strings.Join(n.Flags, ",")
}

// probeKey is a key in slot, in rcluster's own namespace: the hash tag
// makes it hash to slot (topology.KeyForSlot(slot) does).
func probeKey(slot int) string { return "rcluster:probe:{" + topology.KeyForSlot(slot) + "}" }

// probe writes and deletes a key on each shard's master, directly (no
// redirects): agreement on paper is not enough if the master refuses
// writes (CLUSTERDOWN, MOVED, READONLY, min-replicas).
func probe(ctx context.Context, p *poller, views []*view, shards []Shard) error {
	var pr problems
	for _, s := range shards {
		mv := viewOf(views, s.Master)
		if mv == nil || len(mv.me.Slots) == 0 {
			continue // evaluate has reported it; a master with no slots takes no keys
		}
		slot := mv.me.Slots[0].Start
		key := probeKey(slot)
		c := p.client(mv.addr)
		cctx, cancel := context.WithTimeout(ctx, p.conn.CallTimeout())
		err := c.Set(cctx, key, "1", 10*time.Second).Err()
		if err == nil {
			err = c.Del(cctx, key).Err()
		}
		cancel()
		if err != nil {
			pr.add("%s: refuses a write to slot %d: %v", mv.addr, slot, err)
		}
	}
	return pr.err()
}
