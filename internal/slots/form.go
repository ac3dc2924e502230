package slots

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

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
}

// meetStrategy decides who sends CLUSTER MEET to whom.
type meetStrategy int

const (
	// meetMesh: every node MEETs every other node (pipelined per node).
	meetMesh meetStrategy = iota
	// meetStarIn: every node MEETs the first node (redis-cli's way).
	meetStarIn
	// meetStarOut: the first node MEETs every other node (one pipeline).
	meetStarOut
	// meetChords: every node MEETs nodes i+1, i+2, i+4, ... (mod n).
	meetChords
	// meetHalf: every pair MEETs once: node i MEETs i+1 .. i+n/2 (mod n),
	// so the work is spread evenly over the senders.
	meetHalf
	// meetStaged: first the masters meet each other and each replica
	// meets its own master; the replicas REPLICATE as soon as they
	// know their master; only then do all remaining pairs meet (half). The
	// other nodes thus first hear of each replica when it already is one,
	// instead of seeing it as a master until its next ping (up to
	// cluster-node-timeout/2 later). Groups up to halfMax nodes meet pair
	// by pair (halfPairs), larger ones along chords (chordPairs). This is
	// Form's strategy; the others exist for the experiment in
	// meet_experiment_test.go.
	meetStaged
	// meetStagedHalf, meetStagedChords: meetStaged with always halfPairs
	// or always chordPairs (for the experiment).
	meetStagedHalf
	meetStagedChords
)

// halfMax is the largest group meetStaged connects pair by pair (halfPairs);
// larger groups get chordPairs and gossip does the rest. Measured: at 30
// nodes every pair meeting directly knows all in ~0.4s against ~1.4s for
// chords; at 100 nodes the n^2/2 handshakes swamp 2 cores (2.9-4.2s) while
// chords take ~2.0-2.3s.
const halfMax = 32

func (s meetStrategy) pairs(k int) func([]int, func(int, int)) {
	switch {
	case s == meetStagedHalf:
		return halfPairs
	case s == meetStagedChords:
		return chordPairs
	case k <= halfMax:
		return halfPairs
	default:
		return chordPairs
	}
}

func (s meetStrategy) String() string {
	return [...]string{"mesh", "star-in", "star-out", "chords", "half", "staged", "staged-half", "staged-chords"}[s]
}

// defaultMeet is the strategy Form uses; see meetEdges for the measurements.
const defaultMeet = meetStaged

// Form turns the plan's empty nodes into a cluster and returns when every
// node reports cluster_state:ok, all agree, and every replica's link is up,
// or when ctx ends (the error then names the nodes that had not converged).
// Nodes that are not empty (keys, known nodes, slots) are refused by name
// before anything is changed.
func Form(ctx context.Context, p *Plan, o FormOptions) error {
	return form(ctx, p, o, defaultMeet)
}

func form(ctx context.Context, p *Plan, o FormOptions, strategy meetStrategy) error {
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
	if err := assignSlots(ctx, p, ms); err != nil {
		return err
	}
	logf("form: slots: %d masters got their ranges and config epochs 1..%d", len(p.Shards), len(p.Shards))

	// 3. MEET, and 4. replicas follow their masters.
	if strategy >= meetStaged {
		a, b := stagedEdges(ms, strategy)
		n, err := meet(ctx, ms, a)
		if err != nil {
			return err
		}
		logf("form: meet: %d CLUSTER MEET sent (masters with each other, each replica with its master)", n)
		if err := replicate(ctx, ms); err != nil {
			return err
		}
		logf("form: replicate: %d replicas attached", len(ms)-len(p.Shards))
		n, err = meet(ctx, ms, b)
		if err != nil {
			return err
		}
		logf("form: meet: %d CLUSTER MEET sent (every remaining pair)", n)
	} else {
		n, err := meet(ctx, ms, meetEdges(len(ms), strategy))
		if err != nil {
			return err
		}
		logf("form: meet: %d CLUSTER MEET sent (%s)", n, strategy)
		if err := replicate(ctx, ms); err != nil {
			return err
		}
		logf("form: replicate: %d replicas attached", len(ms)-len(p.Shards))
	}

	// 5. Converged and serving.
	addrs := make([]string, len(ms))
	for i, m := range ms {
		addrs[i] = m.addr
	}
	rounds, err := waitReady(ctx, addrs, len(ms), o.Conn)
	if err != nil {
		return fmt.Errorf("form: %w", err)
	}
	logf("form: ready: %d nodes agree, cluster_state:ok, replicas linked, masters serve reads (%d checks)", len(ms), rounds)
	return nil
}

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
		info = pl.Info(ctx, "cluster")
		dbsize = pl.DBSize(ctx)
		cinfo = pl.ClusterInfo(ctx)
		cnodes = pl.ClusterNodes(ctx)
		return nil
	})
	if err := info.Err(); err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return fmt.Sprintf("node %s is not reachable: no answer in time (%v)", m.addr, err)
		}
		return fmt.Sprintf("node %s is not reachable: %v", m.addr, err)
	}
	if topology.ParseInfo(info.Val())["cluster_enabled"] != "1" {
		return fmt.Sprintf("node %s is not cluster-enabled", m.addr)
	}
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

// meetEdges lists, per sender index, the indexes it sends CLUSTER MEET to,
// for the single-round strategies.
func meetEdges(n int, s meetStrategy) [][]int {
	e := make([][]int, n)
	switch s {
	case meetMesh:
		for i := range e {
			for j := 0; j < n; j++ {
				if j != i {
					e[i] = append(e[i], j)
				}
			}
		}
	case meetStarIn:
		for i := 1; i < n; i++ {
			e[i] = []int{0}
		}
	case meetStarOut:
		for j := 1; j < n; j++ {
			e[0] = append(e[0], j)
		}
	case meetHalf:
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		halfPairs(all, func(x, y int) { e[x] = append(e[x], y) })
	case meetChords:
		for i := range e {
			seen := map[int]bool{i: true}
			for d := 1; d < n; d *= 2 {
				j := (i + d) % n
				if !seen[j] {
					seen[j] = true
					e[i] = append(e[i], j)
				}
			}
		}
	}
	return e
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

// stagedEdges returns the two MEET rounds of meetStaged: a = masters among
// themselves plus each replica to its master; b = every other pair once.
func stagedEdges(ms []*member, s meetStrategy) (a, b [][]int) {
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
	s.pairs(len(masters))(masters, func(x, y int) { a[x] = append(a[x], y); mark(x, y) })
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
	s.pairs(n)(all, func(x, y int) {
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
		cmds, err := m.c.Pipelined(ctx, func(pl redis.Pipeliner) error {
			for _, j := range edges[i] {
				t := ms[j]
				pl.Do(ctx, "cluster", "meet", t.ip, t.node.Port, t.cport)
			}
			return nil
		})
		if err != nil {
			for k, c := range cmds {
				if c.Err() != nil {
					err = fmt.Errorf("CLUSTER MEET %s: %w", ms[edges[i][k]].addr, c.Err())
					break
				}
			}
			errs[i] = fmt.Errorf("node %s: %w", m.addr, err)
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
	var bo backoff
	var last string
	for {
		last = ""
		err := knowsNode(ctx, r.c, master.id)
		if err == nil {
			err = r.c.ClusterReplicate(ctx, master.id).Err()
			if err == nil {
				return nil
			}
			if !strings.Contains(err.Error(), "Unknown node") {
				return fmt.Errorf("node %s: CLUSTER REPLICATE %s (%s): %w", r.addr, master.id, master.addr, err)
			}
		}
		last = err.Error()
		if werr := bo.wait(ctx); werr != nil {
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
