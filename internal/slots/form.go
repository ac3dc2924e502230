package slots

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/topology"
)

// ErrRefused is wrapped by Form's error when the pre-check refused the
// nodes (not reachable, not cluster-enabled, not empty): nothing was changed.
var ErrRefused = errors.New("nothing was changed")

// Nodes returns every node of the plan: masters in shard order, then each
// shard's replicas.
func (p *Plan) Nodes() []spec.Node {
	var out []spec.Node
	for _, s := range p.Shards {
		out = append(out, s.Master)
	}
	for _, s := range p.Shards {
		out = append(out, s.Replicas...)
	}
	return out
}

// Addrs returns host:port of every node, in Nodes order.
func (p *Plan) Addrs() []string {
	ns := p.Nodes()
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Addr()
	}
	return out
}

// member is one node while forming.
type member struct {
	node    spec.Node
	addr    string
	c       *redis.Client
	id      string // node id (CLUSTER NODES myself)
	cport   int    // bus port the node reports for itself
	ip      string // resolved IP for CLUSTER MEET
	shard   int    // index of its shard
	replica bool
	uptime  int // seconds, from the pre-check
	// restoreTimeout is the cluster-node-timeout to put back after forming
	// ("" when it was not lowered; see lowerIdleTimeouts).
	restoreTimeout string
}

// halfMax is the largest group Form connects pair by pair (halfPairs);
// larger groups get chordPairs and gossip does the rest. Measured (see
// meet_experiment_test.go): at 30 nodes direct pairs know each other in
// ~0.5s against ~2.9s for chords; at 100 nodes the n^2/2 handshakes swamp 2
// cores (~7s) while chords take ~2.5-3.9s.
const halfMax = 32

// pairsFunc lists pairs of the member indexes idx, calling add once per
// CLUSTER MEET to send.
type pairsFunc func(idx []int, add func(from, to int))

// groupPairs is how Form meets a group of k nodes: pair by pair up to
// halfMax, along chords above.
func groupPairs(k int) pairsFunc {
	if k <= halfMax {
		return halfPairs
	}
	return chordPairs
}

// Form turns the plan's empty nodes into a cluster and returns when every
// node reports cluster_state:ok, all agree, and every replica's link is up,
// or when ctx ends (the error then names the nodes that had not converged).
// Nodes that are not empty (keys, known nodes, slots) are refused by name
// before anything is changed (the error wraps ErrRefused).
//
// Phases, one log line each: pre-check (every node, in parallel); slots
// (ADDSLOTSRANGE + SET-CONFIG-EPOCH on the masters); meet (masters with
// each other, each replica with its master); replicate (each replica
// REPLICATEs as soon as it knows its master's id); meet (all remaining
// pairs directly up to halfMax nodes, along chords above); gossip (above
// halfMax nodes: until every node knows every node, introducing directly
// the few pairs gossip leaves out); settle (nudge nodes
// whose view of another is incomplete); ready (WaitReady). Everything polls
// with short backoff under ctx; nothing sleeps. From largeMin nodes the
// second meet is skipped and settle runs on a budget (see largeMin).
//
// Timing: a master cannot report cluster_state:ok earlier than 2s after it
// started (CLUSTER_WRITABLE_DELAY), so Form takes ~2s for 3..30 nodes,
// whether they were just started or have idled (see bootstrapNodeTimeout
// for what idle masters would otherwise cost).
func Form(ctx context.Context, p *Plan, o FormOptions) (err error) {
	if p == nil || len(p.Shards) == 0 {
		return errors.New("form: empty plan")
	}
	start := time.Now()
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+" (%s)\n", append(args, time.Since(start).Round(time.Millisecond))...)
		}
	}
	var ms []*member
	for i, s := range p.Shards {
		ms = append(ms, &member{node: s.Master, shard: i})
	}
	for i, s := range p.Shards {
		for _, r := range s.Replicas {
			ms = append(ms, &member{node: r, shard: i, replica: true})
		}
	}
	for _, m := range ms {
		m.addr = m.node.Addr()
		m.c = nodeClient(o.Conn, m.addr)
	}
	defer func() {
		for _, m := range ms {
			_ = m.c.Close()
		}
	}()

	// 1. Pre-check every node; refuse them all by name before any change.
	if err := precheck(ctx, ms); err != nil {
		return err
	}
	logf("form: pre-check: %d nodes reachable, cluster-enabled and empty", len(ms))

	// 2. Slots and config epochs on the masters.
	// Large clusters: see largeMin for what changes and why.
	large := len(ms) >= largeMin || o.forceLarge
	lowered := 0
	hint := func(err error) error { return err }
	if !large {
		lowered = lowerIdleTimeouts(ctx, ms)
	} else if h := largeTimeoutHint(ctx, ms); h != "" {
		// Read now, while the nodes still answer quickly.
		hint = func(err error) error { return fmt.Errorf("%w (%s)", err, h) }
	}
	if lowered > 0 {
		defer func() {
			if rerr := restoreTimeouts(ctx, ms); rerr != nil {
				err = errors.Join(err, fmt.Errorf("form: %w", rerr))
			}
		}()
	}
	if err := assignSlots(ctx, p, ms); err != nil {
		return err
	}
	if lowered > 0 {
		logf("form: slots: %d masters got their ranges and config epochs 1..%d; cluster-node-timeout %dms on %d idle masters until formed",
			len(p.Shards), len(p.Shards), bootstrapNodeTimeout, lowered)
	} else {
		logf("form: slots: %d masters got their ranges and config epochs 1..%d", len(p.Shards), len(p.Shards))
	}

	// 3. MEET, and 4. replicas follow their masters: first the masters meet
	// each other and each replica meets its own master; the replicas
	// REPLICATE as soon as they know their master; only then do the
	// remaining pairs meet. The other nodes thus first hear of each replica
	// when it already is one, instead of seeing it as a master until its
	// next ping (up to cluster-node-timeout/2 later).
	a, b := stagedEdges(ms, groupPairs)
	n, err := meet(ctx, ms, a)
	if err != nil {
		return err
	}
	logf("form: meet: %d CLUSTER MEET sent (masters with each other, each replica with its master)", n)
	if err := replicate(ctx, ms); err != nil {
		return err
	}
	logf("form: replicate: %d replicas attached", len(ms)-len(p.Shards))
	if large {
		logf("form: meet: no second round for %d nodes; gossip introduces the rest", len(ms))
	} else {
		n, err = meet(ctx, ms, b)
		if err != nil {
			return err
		}
		logf("form: meet: %d CLUSTER MEET sent (every remaining pair)", n)
	}

	// 5. Make every node's view of every other complete (see settle). When
	// gossip makes the introductions (groups larger than halfMax met along
	// chords; large clusters skip the second round), first watch it
	// cheaply until every node knows every node (gossipWait): settling
	// during the gossip burst nudges pairs that are still shaking hands.
	// Measured at 100 nodes (50+50): settling at once sent ~4 500 nudges
	// (each a new bus connection on 2 saturated cores) and forming took
	// 3.0-3.8s; waiting for gossip first leaves ~200 nudges and 2.1-2.2s.
	var maxPoll time.Duration
	lim := settleLimits{}
	if large {
		maxPoll, lim = largePoll, largeSettle
	}
	if large || len(ms) > halfMax {
		polls, intros, err := gossipWait(ctx, ms, maxPoll)
		if err != nil {
			return hint(err)
		}
		logf("form: gossip: every node knows all %d nodes (%d polls, %d introductions)", len(ms), polls, intros)
	}
	nudges, err := settle(ctx, p, ms, lim)
	if err != nil {
		return hint(err)
	}
	logf("form: settle: every node sees every other's slots and role (%d nudges)", nudges)

	// 6. Converged and serving.
	addrs := make([]string, len(ms))
	clients := make([]*redis.Client, len(ms))
	for i, m := range ms {
		addrs[i], clients[i] = m.addr, m.c
	}
	rounds, err := waitReadyWith(ctx, addrs, clients, len(ms), maxPoll)
	if err != nil {
		return hint(fmt.Errorf("form: %w", err))
	}
	logf("form: ready: %d nodes agree, cluster_state:ok, replicas linked, masters serve reads (%d checks)", len(ms), rounds)
	return nil
}

// settle closes the gap the cluster bus leaves after a first handshake.
// When X completes a handshake with Y, the PONG that completes it is not
// used to update X's view of Y: X knows Y's role flag but not its slots nor
// (for a replica) its master, until Y's next PING reaches X, which Redis
// sends on its own schedule (a random node per second, or every
// cluster-node-timeout/2: 2.5s with the usual 5000). Measured with
// node-timeout 5000: 6 nodes took ~4-5s to agree.
//
// settle instead compares each node's CLUSTER NODES with the plan and, for
// every node X whose view of a known node Y is incomplete or stale, asks Y
// to CLUSTER MEET X again: X then receives a MEET from a known sender and
// applies Y's header (slots, role, master) at once. Each (Y, X) pair is
// nudged at most once per nudgeEvery. It returns the number of nudges.
func settle(ctx context.Context, p *Plan, ms []*member, lim settleLimits) (int, error) {
	type want struct {
		master   bool
		slots    topology.SlotRange
		masterID string
	}
	wants := make([]want, len(ms))
	shardMaster := map[int]string{}
	for _, m := range ms {
		if !m.replica {
			shardMaster[m.shard] = m.id
		}
	}
	for i, m := range ms {
		if m.replica {
			wants[i] = want{masterID: shardMaster[m.shard]}
		} else {
			wants[i] = want{master: true, slots: p.Shards[m.shard].Slots}
		}
	}
	lastNudge := map[[2]int]time.Time{}
	// seen[x] is why x was unsettled the last time it answered: when the
	// deadline cuts the final round short, that is the useful diagnosis.
	seen := make([][]string, len(ms))
	nudges := 0
	start := time.Now()
	bo := poll.Backoff{Max: lim.maxPoll}
	if lim.every <= 0 {
		lim.every = nudgeEvery
	}
	for {
		views := make([][]topology.Node, len(ms))
		errs := make([]error, len(ms))
		parallel(len(ms), func(i int) {
			s, err := ms[i].c.ClusterNodes(ctx).Result()
			if err == nil {
				views[i], err = topology.ParseNodes(s)
			}
			errs[i] = err
		})
		// send[y] lists the x that y must MEET; problems[x] says why x is
		// not settled (for the error at the deadline).
		send := make([][]int, len(ms))
		problems := make([][]string, len(ms))
		budget := lim.perRound
		now := time.Now()
		for x := range ms {
			if errs[x] != nil {
				if ctx.Err() != nil && len(seen[x]) > 0 {
					problems[x] = seen[x]
				} else {
					problems[x] = append(problems[x], "CLUSTER NODES: "+errs[x].Error())
				}
				continue
			}
			byID := make(map[string]topology.Node, len(views[x]))
			for _, n := range views[x] {
				byID[n.ID] = n
			}
			var unknown []string
			for y := range ms {
				if y == x {
					continue
				}
				n, ok := byID[ms[y].id]
				if !ok || n.HasFlag("handshake") {
					// MEET or gossip will bring it; name the bus port
					// too, since a blocked one is the usual reason.
					unknown = append(unknown, fmt.Sprintf("%s (bus port %d)", ms[y].addr, ms[y].cport))
					continue
				}
				w := wants[y]
				var bad string
				switch {
				case w.master && !n.IsMaster():
					bad = "sees " + ms[y].addr + " as " + strings.Join(n.Flags, ",") + ", not master"
				case w.master && (len(n.Slots) != 1 || n.Slots[0] != w.slots):
					bad = fmt.Sprintf("sees %s with slots %q, not %s", ms[y].addr,
						topology.FormatRanges(n.Slots), topology.FormatRanges([]topology.SlotRange{w.slots}))
				case !w.master && (!n.IsReplica() || n.MasterID != w.masterID):
					bad = fmt.Sprintf("sees %s as %s %s, not replica of %s", ms[y].addr,
						strings.Join(n.Flags, ","), n.MasterID, w.masterID)
				}
				if bad == "" {
					continue
				}
				problems[x] = append(problems[x], bad)
				if now.Sub(lastNudge[[2]int{y, x}]) >= lim.every && (lim.perRound <= 0 || budget > 0) {
					budget--
					lastNudge[[2]int{y, x}] = now
					send[y] = append(send[y], x)
				}
			}
			if len(unknown) > 0 {
				problems[x] = append(problems[x], "does not know "+strings.Join(unknown, ", "))
			}
			seen[x] = problems[x]
		}
		var nr []NotReady
		for x, pr := range problems {
			if len(pr) > 0 {
				if len(pr) > 4 {
					pr = append(pr[:4:4], fmt.Sprintf("and %d more", len(pr)-4))
				}
				nr = append(nr, NotReady{Addr: ms[x].addr, Reason: strings.Join(pr, "; ")})
			}
		}
		if len(nr) == 0 {
			return nudges, nil
		}
		for _, xs := range send {
			nudges += len(xs)
		}
		if _, err := meet(ctx, ms, send); err != nil {
			return nudges, err
		}
		if err := bo.Wait(ctx); err != nil {
			return nudges, fmt.Errorf("form: cluster not ready after %s: nodes do not see the planned cluster: %s: %w",
				time.Since(start).Round(time.Millisecond), FormatNotReady(nr), err)
		}
	}
}

// largeMin is the cluster size from which Form stops driving every
// handshake and lets Redis's gossip do most of the work. A cluster of n
// nodes needs n(n-1)/2 handshakes, and in steady state every pair pings each
// other every cluster-node-timeout/2 with ~n/10 gossip entries per message.
// Measured at 300 nodes (150+150) on 2 cores with the small-cluster approach
// the settle phase's nudges (each one a CLUSTER MEET: a new handshake and
// connection) grew with the load they caused and the cluster never formed
// (load average 243). From largeMin nodes Form therefore: leaves
// cluster-node-timeout alone (a lower one doubles the ping traffic and lets
// busy nodes time out handshakes and flag each other as failing); sends only
// the first MEET round (masters along chords, each replica to its master)
// and leaves the other introductions to gossip, watching them with one
// cheap CLUSTER INFO per node (gossipWait); then settles with a budget
// (largeSettle: each pair nudged at most every 3s, at most 150 nudges and
// one round of views per largePoll: one round of 300 full CLUSTER NODES
// views costs ~0.1s of CPU on each side); the ready check also polls at most
// every largePoll.
const largeMin = 150

// largePoll is the polling interval cap for large clusters (largeMin).
const largePoll = 500 * time.Millisecond

// gossipWait polls CLUSTER INFO on every node (every maxPoll at most; 0:
// poll.Backoff's default) until each knows every node: one cheap command
// per node while gossip does the introductions. When gossip stalls with a
// few nodes short (introduce), it introduces them directly. It returns the
// number of polling rounds and of introductions; at ctx's end its error
// names the nodes that were not there yet and what they last said.
func gossipWait(ctx context.Context, ms []*member, maxPoll time.Duration) (rounds, intros int, err error) {
	start := time.Now()
	want := strconv.Itoa(len(ms))
	last := make([]string, len(ms))
	gap := make([]int, len(ms)) // |known - want| of the last answer
	var prev []string           // last of the round before
	lastIntro := map[[2]int]time.Time{}
	bo := poll.Backoff{Max: maxPoll}
	for round := 1; ; round++ {
		parallel(len(ms), func(i int) {
			s, err := ms[i].c.ClusterInfo(ctx).Result()
			if err != nil {
				if ctx.Err() == nil || last[i] == "" {
					last[i] = "CLUSTER INFO: " + err.Error()
				}
				return
			}
			inf := topology.ParseInfo(s)
			last[i], gap[i] = "", 0
			if k := inf["cluster_known_nodes"]; k != want {
				last[i] = fmt.Sprintf("cluster_known_nodes:%s (want %s)", k, want)
				n, _ := strconv.Atoi(k)
				gap[i] = max(n-len(ms), len(ms)-n)
			}
		})
		var nr []NotReady
		var short []int
		missing := 0
		for i, w := range last {
			if w != "" {
				nr = append(nr, NotReady{Addr: ms[i].addr, Reason: w})
				short = append(short, i)
				missing += max(gap[i], 1)
			}
		}
		if len(nr) == 0 {
			return round, intros, nil
		}
		// The same nodes short by the same counts two rounds running, and
		// on average less than one introduction per node missing: gossip
		// has stalled on a few pairs (see introduce). (During the burst the
		// counts change every round and run into the thousands.)
		if slices.Equal(last, prev) && missing <= len(ms) {
			n, err := introduce(ctx, ms, short, lastIntro)
			if err != nil {
				return round, intros, err
			}
			intros += n
		}
		prev = slices.Clone(last)
		if err := bo.Wait(ctx); err != nil {
			total, more := len(nr), ""
			if len(nr) > 10 {
				more = fmt.Sprintf("; and %d more", len(nr)-10)
				nr = nr[:10]
			}
			return round, intros, fmt.Errorf("form: cluster not ready after %s: %d of %d nodes not ok: %s%s: %w",
				time.Since(start).Round(time.Millisecond), total, len(ms), FormatNotReady(nr), more, err)
		}
	}
}

// introduce makes each node in xs CLUSTER MEET the members it does not
// know yet (by its CLUSTER NODES), each pair at most once per nudgeEvery,
// and returns how many MEETs it sent. Gossip leaves such gaps for seconds:
// a node only gossips about peers it has a link to or that serve slots,
// and after the first handshakes each node pings a random peer once a
// second and the others only every cluster-node-timeout/2. Measured at 100
// nodes (50+50): 2 of 5 runs had 1-3 masters not knowing one replica each
// for 1.5-2.3s (gossip 2.7-3.0s instead of 1.2-1.6s, up ~3.9s instead of
// ~2.55s); at 40 nodes, 6-8 nodes lacked one peer each for 1.4s. X
// MEETing Y introduces Y to X in one round trip.
func introduce(ctx context.Context, ms []*member, xs []int, lastIntro map[[2]int]time.Time) (int, error) {
	unknown := make([][]int, len(xs))
	parallel(len(xs), func(k int) {
		x := xs[k]
		s, err := ms[x].c.ClusterNodes(ctx).Result()
		if err != nil {
			return // the next round asks again
		}
		view, err := topology.ParseNodes(s)
		if err != nil {
			return
		}
		known := make(map[string]bool, len(view))
		for _, n := range view {
			if !n.HasFlag("handshake") {
				known[n.ID] = true
			}
		}
		for y, m := range ms {
			if y != x && !known[m.id] {
				unknown[k] = append(unknown[k], y)
			}
		}
	})
	edges := make([][]int, len(ms))
	now := time.Now()
	for k, x := range xs {
		for _, y := range unknown[k] {
			if now.Sub(lastIntro[[2]int{x, y}]) >= nudgeEvery {
				lastIntro[[2]int{x, y}] = now
				edges[x] = append(edges[x], y)
			}
		}
	}
	return meet(ctx, ms, edges)
}

// settleLimits bound settle's work; the zero value is the small-cluster
// behaviour (nudgeEvery, no cap, poll.Backoff's 100ms).
type settleLimits struct {
	every    time.Duration // nudge one pair at most this often
	perRound int           // at most this many nudges per round (0: no cap)
	maxPoll  time.Duration // longest delay between rounds
}

// largeSettle are settle's limits for large clusters (largeMin).
var largeSettle = settleLimits{every: 3 * time.Second, perRound: 150, maxPoll: largePoll}

// largeTimeoutHint is nodeTimeoutHint for the first node's
// cluster-node-timeout ("" when it cannot be read): added to a large
// cluster's forming error, it says what to change.
func largeTimeoutHint(ctx context.Context, ms []*member) string {
	v, err := ms[0].c.ConfigGet(ctx, "cluster-node-timeout").Result()
	if err != nil {
		return ""
	}
	t, _ := strconv.Atoi(v["cluster-node-timeout"])
	return nodeTimeoutHint(t, len(ms))
}

// nodeTimeoutHint says what to do when cluster-node-timeout (ms) is below
// ~100ms per node: every pair of nodes pings each other every node-timeout/2,
// and measured on 2 cores a 300-node cluster at 5000 overloads the host
// while 30000 leaves room (docs/bench.md). "" when the timeout is fine.
func nodeTimeoutHint(timeoutMS, nodes int) string {
	want := nodes * 100
	if timeoutMS <= 0 || timeoutMS >= want {
		return ""
	}
	return fmt.Sprintf("cluster-node-timeout %d is low for %d nodes: their heartbeat traffic grows with the square of the node count; "+
		"on a small machine set config: {cluster-node-timeout: %d} in the spec", timeoutMS, nodes, want)
}

// nudgeEvery spaces repeated nudges of the same pair: a MEET handshake
// needs a cluster cron tick (100ms) or two to go through.
const nudgeEvery = 300 * time.Millisecond

func precheck(ctx context.Context, ms []*member) error {
	problems := make([]string, len(ms))
	parallel(len(ms), func(i int) { problems[i] = precheckNode(ctx, ms[i]) })
	var bad []string
	for _, p := range problems {
		if p != "" {
			bad = append(bad, p)
		}
	}
	// The same process listed under two addresses (e.g. localhost and
	// 127.0.0.1) would be asked to be two nodes.
	byID := map[string]string{}
	for _, m := range ms {
		if m.id == "" {
			continue
		}
		if other, dup := byID[m.id]; dup {
			bad = append(bad, fmt.Sprintf("node %s and node %s are the same redis-server (id %s)", other, m.addr, m.id))
		}
		byID[m.id] = m.addr
	}
	if len(bad) > 0 {
		return fmt.Errorf("form: refusing to form the cluster: %s (%w)", strings.Join(bad, "; "), ErrRefused)
	}
	// MEET needs an IP; resolve hostnames now, before changing anything.
	for _, m := range ms {
		ip, err := resolveIP(ctx, m.node.Host)
		if err != nil {
			return fmt.Errorf("form: node %s: resolve %s: %w (%w)", m.addr, m.node.Host, err, ErrRefused)
		}
		m.ip = ip
	}
	return nil
}

// precheckNode returns "" when the node may join, else why not, naming it.
func precheckNode(ctx context.Context, m *member) string {
	var info, cinfo, cnodes *redis.StringCmd
	var dbsize *redis.IntCmd
	_, _ = m.c.Pipelined(ctx, func(pl redis.Pipeliner) error {
		info = pl.Info(ctx, "cluster", "server")
		dbsize = pl.DBSize(ctx)
		cinfo = pl.ClusterInfo(ctx)
		cnodes = pl.ClusterNodes(ctx)
		return nil
	})
	if err := info.Err(); err != nil {
		if isTimeout(err) {
			return fmt.Sprintf("node %s is not reachable: no answer in time (%v)", m.addr, err)
		}
		return fmt.Sprintf("node %s is not reachable: %v", m.addr, err)
	}
	inf := topology.ParseInfo(info.Val())
	if inf["cluster_enabled"] != "1" {
		return fmt.Sprintf("node %s is not cluster-enabled", m.addr)
	}
	m.uptime, _ = strconv.Atoi(inf["uptime_in_seconds"])
	for _, c := range []redis.Cmder{dbsize, cinfo, cnodes} {
		if err := c.Err(); err != nil {
			return fmt.Sprintf("node %s: %s: %v", m.addr, strings.ToUpper(strings.Join(strings.Fields(fmt.Sprint(c.Args()...)), " ")), err)
		}
	}
	ci := topology.ParseInfo(cinfo.Val())
	var why []string
	if n := dbsize.Val(); n > 0 {
		why = append(why, fmt.Sprintf("%d keys", n))
	}
	if k := ci["cluster_known_nodes"]; k != "1" {
		why = append(why, "knows "+k+" nodes")
	}
	if s := ci["cluster_slots_assigned"]; s != "0" {
		why = append(why, s+" slots assigned")
	}
	nodes, err := topology.ParseNodes(cnodes.Val())
	if err != nil {
		return fmt.Sprintf("node %s: %v", m.addr, err)
	}
	me, ok := topology.Myself(nodes)
	if !ok {
		return fmt.Sprintf("node %s: CLUSTER NODES has no myself line", m.addr)
	}
	if me.IsReplica() {
		why = append(why, "is a replica")
	}
	if len(why) > 0 {
		return fmt.Sprintf("node %s is not empty (%s)", m.addr, strings.Join(why, ", "))
	}
	m.id, m.cport = me.ID, me.BusPort
	return ""
}

// isTimeout reports whether err is a deadline or network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// resolveIP returns an IP for host, preferring IPv4.
func resolveIP(ctx context.Context, host string) (string, error) {
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), nil
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return "", err
	}
	for _, ip := range ips {
		if ip.IP.To4() != nil {
			return ip.IP.String(), nil
		}
	}
	if len(ips) == 0 {
		return "", fmt.Errorf("no addresses")
	}
	return ips[0].IP.String(), nil
}

// bootstrapNodeTimeout is the cluster-node-timeout (ms) idle masters run
// with while the cluster forms.
//
// Redis holds a master in cluster_state:fail for a "rejoin delay" of
// cluster-node-timeout (clamped to 0.5-5s) after it last found itself in a
// minority, and a master without slots that is past its first 2s counts as
// a minority on every cron tick. So a master that was started more than ~2s
// before getting its slots (re-forming running nodes, or the first of many
// nodes spawned one after another) stays down for node-timeout after
// ADDSLOTSRANGE: measured 5.1s with 5000 against 2.0s for fresh nodes.
// Lowering the timeout on such masters to 2000 until Form ends brings them
// to the same ~2s; the original value is put back before Form returns.
const bootstrapNodeTimeout = 2000

// lowerIdleTimeouts lowers cluster-node-timeout on masters older than 1s
// whose timeout is above bootstrapNodeTimeout, remembering the old value.
// Nodes where CONFIG is unavailable (renamed) are left alone.
func lowerIdleTimeouts(ctx context.Context, ms []*member) int {
	var n atomic.Int32
	parallel(len(ms), func(i int) {
		m := ms[i]
		if m.replica || m.uptime < 1 {
			return
		}
		v, err := m.c.ConfigGet(ctx, "cluster-node-timeout").Result()
		if err != nil {
			return
		}
		cur, err := strconv.Atoi(v["cluster-node-timeout"])
		if err != nil || cur <= bootstrapNodeTimeout {
			return
		}
		if m.c.ConfigSet(ctx, "cluster-node-timeout", strconv.Itoa(bootstrapNodeTimeout)).Err() == nil {
			m.restoreTimeout = v["cluster-node-timeout"]
			n.Add(1)
		}
	})
	return int(n.Load())
}

// restoreTimeouts puts back what lowerIdleTimeouts changed, even when ctx
// has ended (with its own short deadline).
func restoreTimeouts(ctx context.Context, ms []*member) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	errs := make([]error, len(ms))
	parallel(len(ms), func(i int) {
		m := ms[i]
		if m.restoreTimeout == "" {
			return
		}
		if err := m.c.ConfigSet(rctx, "cluster-node-timeout", m.restoreTimeout).Err(); err != nil {
			errs[i] = fmt.Errorf("node %s: restore cluster-node-timeout %s: %w", m.addr, m.restoreTimeout, err)
			return
		}
		m.restoreTimeout = ""
	})
	return errors.Join(errs...)
}

func assignSlots(ctx context.Context, p *Plan, ms []*member) error {
	errs := make([]error, len(p.Shards))
	parallel(len(p.Shards), func(i int) {
		m, s := ms[i], p.Shards[i]
		cmds, err := m.c.Pipelined(ctx, func(pl redis.Pipeliner) error {
			pl.ClusterAddSlotsRange(ctx, s.Slots.Start, s.Slots.End)
			pl.Do(ctx, "cluster", "set-config-epoch", s.Epoch)
			return nil
		})
		if err != nil {
			for _, c := range cmds {
				if c.Err() != nil {
					err = fmt.Errorf("%s: %w", strings.Join(strings.Fields(fmt.Sprint(c.Args()...)), " "), c.Err())
					break
				}
			}
			errs[i] = fmt.Errorf("node %s: %w", m.addr, err)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("form: assign slots: %w", err)
	}
	return nil
}

// halfPairs lists each unordered pair of idx once, spread evenly over
// senders: idx[i] MEETs idx[i+1 .. i+k/2] (mod k).
func halfPairs(idx []int, add func(from, to int)) {
	k := len(idx)
	for i := range idx {
		for d := 1; d <= k/2; d++ {
			if k%2 == 0 && d == k/2 && i >= k/2 {
				continue
			}
			add(idx[i], idx[(i+d)%k])
		}
	}
}

// chordPairs lists the pairs (idx[i], idx[i+d]) for d = 1, 2, 4, ... < k
// (mod k), each unordered pair once: about k*log2(k) pairs that connect
// every node within log2(k) hops, the rest is left to gossip.
func chordPairs(idx []int, add func(from, to int)) {
	k := len(idx)
	seen := map[[2]int]bool{}
	for i := range idx {
		for d := 1; d < k; d *= 2 {
			x, y := idx[i], idx[(i+d)%k]
			key := [2]int{min(x, y), max(x, y)}
			if !seen[key] {
				seen[key] = true
				add(x, y)
			}
		}
	}
}

// stagedEdges returns Form's two MEET rounds: a = masters among themselves
// plus each replica to its master; b = every other pair once. pairs(k)
// picks how a group of k nodes is connected (Form: groupPairs; the
// experiment also tries fixed choices).
func stagedEdges(ms []*member, pairs func(k int) pairsFunc) (a, b [][]int) {
	n := len(ms)
	a, b = make([][]int, n), make([][]int, n)
	var masters []int
	masterOf := map[int]int{} // shard -> member index
	for i, m := range ms {
		if !m.replica {
			masters = append(masters, i)
			masterOf[m.shard] = i
		}
	}
	met := map[[2]int]bool{}
	mark := func(x, y int) { met[[2]int{min(x, y), max(x, y)}] = true }
	pairs(len(masters))(masters, func(x, y int) { a[x] = append(a[x], y); mark(x, y) })
	for i, m := range ms {
		if m.replica {
			j := masterOf[m.shard]
			a[i] = append(a[i], j)
			mark(i, j)
		}
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	pairs(n)(all, func(x, y int) {
		if !met[[2]int{min(x, y), max(x, y)}] {
			b[x] = append(b[x], y)
		}
	})
	return a, b
}

func meet(ctx context.Context, ms []*member, edges [][]int) (int, error) {
	errs := make([]error, len(ms))
	total := 0
	for _, e := range edges {
		total += len(e)
	}
	parallel(len(ms), func(i int) {
		if len(edges[i]) == 0 {
			return
		}
		m := ms[i]
		// MEET can be repeated safely (a known node's handshake is just
		// dropped), so a network timeout on a busy node is retried.
		var bo poll.Backoff
		for {
			cmds, err := m.c.Pipelined(ctx, func(pl redis.Pipeliner) error {
				for _, j := range edges[i] {
					t := ms[j]
					pl.Do(ctx, "cluster", "meet", t.ip, t.node.Port, t.cport)
				}
				return nil
			})
			if err == nil {
				return
			}
			if isTimeout(err) && ctx.Err() == nil && bo.Wait(ctx) == nil {
				continue
			}
			for k, c := range cmds {
				if c.Err() != nil {
					err = fmt.Errorf("CLUSTER MEET %s: %w", ms[edges[i][k]].addr, c.Err())
					break
				}
			}
			errs[i] = fmt.Errorf("node %s: %w", m.addr, err)
			return
		}
	})
	if err := errors.Join(errs...); err != nil {
		return total, fmt.Errorf("form: meet: %w", err)
	}
	return total, nil
}

// replicate makes every replica follow its master as soon as it knows the
// master's node id (it learns it from the MEET handshake or gossip).
func replicate(ctx context.Context, ms []*member) error {
	masters := map[int]*member{}
	for _, m := range ms {
		if !m.replica {
			masters[m.shard] = m
		}
	}
	var reps []*member
	for _, m := range ms {
		if m.replica {
			reps = append(reps, m)
		}
	}
	errs := make([]error, len(reps))
	parallel(len(reps), func(i int) {
		r := reps[i]
		errs[i] = replicateOne(ctx, r, masters[r.shard])
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("form: replicate: %w", err)
	}
	return nil
}

func replicateOne(ctx context.Context, r, master *member) error {
	var bo poll.Backoff
	var last string
	for {
		last = ""
		err := knowsNode(ctx, r.c, master.id)
		if err == nil {
			err = r.c.ClusterReplicate(ctx, master.id).Err()
			if err == nil {
				return nil
			}
			// Unknown node: gossip has not settled; a timeout: the node is
			// busy (hundreds of handshakes on 2 cores). Both are safe to retry.
			if !strings.Contains(err.Error(), "Unknown node") && !isTimeout(err) {
				return fmt.Errorf("node %s: CLUSTER REPLICATE %s (%s): %w", r.addr, master.id, master.addr, err)
			}
		}
		last = err.Error()
		if werr := bo.Wait(ctx); werr != nil {
			return fmt.Errorf("node %s never learned its master %s (%s): %s: %w", r.addr, master.addr, master.id, last, werr)
		}
	}
}

var errNotYet = errors.New("master not known yet")

// knowsNode reports (nil) whether c's CLUSTER NODES lists id as a settled
// master (handshake over).
func knowsNode(ctx context.Context, c *redis.Client, id string) error {
	s, err := c.ClusterNodes(ctx).Result()
	if err != nil {
		return err
	}
	i := strings.Index(s, id+" ")
	if i < 0 {
		return errNotYet
	}
	line := s[i:]
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	ns, err := topology.ParseNodes(line)
	if err != nil || len(ns) != 1 {
		return fmt.Errorf("parse own CLUSTER NODES: %v", err)
	}
	if ns[0].HasFlag("handshake") || !ns[0].IsMaster() {
		return errNotYet
	}
	return nil
}

// WaitReady polls every addr until the cluster is usable: cluster_state:ok
// on every node, each knows expectNodes nodes and agrees on the slot map, no
// fail flags, every replica link up. On ctx end it returns an error naming
// the nodes that are not ready and why.
//
// In detail, each round asks every node (in parallel) for CLUSTER INFO,
// CLUSTER NODES and INFO replication and requires: cluster_state:ok;
// cluster_known_nodes == expectNodes; no node seen as fail, fail?,
// handshake or noaddr, and a bus link to every node; all 16384 slots
// assigned and none migrating/importing; the same slot owners and the same
// roles in every node's view; master_link_status:up on replicas; and each
// master answering EXISTS for a key in its own slots (no CLUSTERDOWN).
func WaitReady(ctx context.Context, addrs []string, expectNodes int, o redisconn.Options) error {
	if len(addrs) == 0 {
		return errNoAddrs
	}
	_, err := waitReady(ctx, addrs, expectNodes, o)
	return err
}
