package slots

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/topology"
)

// NotReady names a node that is not ready and why.
type NotReady struct {
	Addr   string
	Reason string // e.g. "cluster_state:fail; master_link_status:down"
}

func (n NotReady) String() string { return n.Addr + ": " + n.Reason }

// FormatNotReady joins a CheckReady result into one line:
// "127.0.0.1:7002: cluster_state:fail; 127.0.0.1:7005: master_link_status:down".
func FormatNotReady(nr []NotReady) string {
	parts := make([]string, len(nr))
	for i, n := range nr {
		parts[i] = n.String()
	}
	return strings.Join(parts, "; ")
}

// CheckReady probes every addr once (in parallel) and returns the nodes
// that are not ready and why (nil when the cluster is usable), by the same
// rules as WaitReady.
func CheckReady(ctx context.Context, addrs []string, expectNodes int, o redisconn.Options) []NotReady {
	return check(ctx, addrs, expectNodes, o, false).NotReady
}

// Health is one round of readiness checks (see Check).
type Health struct {
	// NotReady lists the nodes that are not ready and why (nil: usable).
	NotReady []NotReady
	// Servers[i] is who answered at addrs[i]: its process_id and tcp_port
	// from INFO server (zero when it did not answer), so a caller can tell
	// its own processes from strangers without a second connection.
	Servers []Server
}

// Server identifies the redis-server process that answered a probe.
type Server struct {
	PID, Port int
}

// Check is CheckReady that also reports who answered at each address, in
// the same round trip (it asks INFO for two sections: Redis 7.0 or later).
func Check(ctx context.Context, addrs []string, expectNodes int, o redisconn.Options) Health {
	return check(ctx, addrs, expectNodes, o, true)
}

func check(ctx context.Context, addrs []string, expectNodes int, o redisconn.Options, withServer bool) Health {
	clients := dialAll(addrs, o)
	defer closeAll(clients)
	res := probeRound(ctx, addrs, clients, expectNodes, withServer)
	h := Health{NotReady: judge(addrs, res, expectNodes), Servers: make([]Server, len(res))}
	for i, p := range res {
		h.Servers[i] = p.server
	}
	return h
}

// waitReady is WaitReady; it reports (if log is non-nil) nothing itself and
// returns the number of polling rounds for diagnostics.
func waitReady(ctx context.Context, addrs []string, expectNodes int, o redisconn.Options) (int, error) {
	clients := dialAll(addrs, o)
	defer closeAll(clients)
	return waitReadyWith(ctx, addrs, clients, expectNodes, 0)
}

// waitReadyWith is waitReady on clients the caller owns (one per addr):
// Form reuses its own connections instead of opening a second set.
// maxPoll caps the delay between rounds (0: poll.Backoff's 100ms).
func waitReadyWith(ctx context.Context, addrs []string, clients []*redis.Client, expectNodes int, maxPoll time.Duration) (int, error) {
	start := time.Now()
	var prev []probe
	bo := poll.Backoff{Max: maxPoll}
	for round := 1; ; round++ {
		res := probeRound(ctx, addrs, clients, expectNodes, false)
		if ctx.Err() != nil {
			// The deadline may have cut this round short: for nodes whose
			// probe failed because of that, the previous round's answer
			// is the better diagnosis.
			for i := range res {
				if res[i].err != nil && prev != nil {
					res[i] = prev[i]
				}
			}
			nr := judge(addrs, res, expectNodes)
			if len(nr) == 0 {
				return round, nil
			}
			return round, fmt.Errorf("cluster not ready after %s (%d checks): %s: %w",
				time.Since(start).Round(time.Millisecond), round, FormatNotReady(nr), ctx.Err())
		}
		nr := judge(addrs, res, expectNodes)
		if len(nr) == 0 {
			return round, nil
		}
		prev = res
		if err := bo.Wait(ctx); err != nil {
			return round, fmt.Errorf("cluster not ready after %s (%d checks): %s: %w",
				time.Since(start).Round(time.Millisecond), round, FormatNotReady(nr), err)
		}
	}
}

func dialAll(addrs []string, o redisconn.Options) []*redis.Client {
	cs := make([]*redis.Client, len(addrs))
	for i, a := range addrs {
		cs[i] = nodeClient(o, a)
	}
	return cs
}

func closeAll(cs []*redis.Client) {
	for _, c := range cs {
		_ = c.Close()
	}
}

// probe is what one node said in one round.
type probe struct {
	err     error
	info    map[string]string // CLUSTER INFO
	repl    map[string]string // INFO replication (and server: probeRound's withServer)
	server  Server            // from INFO server, when asked
	nodes   []topology.Node
	me      topology.Node
	slotSig string
	roleSig string
	// serveErr is the result of reading a key in one of the node's own
	// slots (masters only, and only when the node looked ready).
	serveErr  error
	serveKey  string
	serveDone bool
}

// withServer adds INFO server to the probe (one INFO with two sections:
// Redis 7.0+).
func probeRound(ctx context.Context, addrs []string, clients []*redis.Client, expect int, withServer bool) []probe {
	res := make([]probe, len(addrs))
	parallel(len(addrs), func(i int) { res[i] = probeNode(ctx, clients[i], expect, withServer) })
	return res
}

func probeNode(ctx context.Context, c *redis.Client, expect int, withServer bool) probe {
	var p probe
	var ci, cn, ir *redis.StringCmd
	_, err := c.Pipelined(ctx, func(pl redis.Pipeliner) error {
		ci = pl.ClusterInfo(ctx)
		cn = pl.ClusterNodes(ctx)
		if withServer {
			ir = pl.Info(ctx, "server", "replication")
		} else {
			ir = pl.Info(ctx, "replication")
		}
		return nil
	})
	if err != nil {
		p.err = err
		return p
	}
	p.info = topology.ParseInfo(ci.Val())
	p.repl = topology.ParseInfo(ir.Val())
	p.server.PID, _ = strconv.Atoi(p.repl["process_id"])
	p.server.Port, _ = strconv.Atoi(p.repl["tcp_port"])
	p.nodes, p.err = topology.ParseNodes(cn.Val())
	if p.err != nil {
		return p
	}
	p.me, _ = topology.Myself(p.nodes)
	p.slotSig = topology.SlotSignature(p.nodes)
	p.roleSig = topology.RoleSignature(p.nodes)
	// The final proof: a master that looks ready must also serve a read in
	// its own slots (CLUSTER INFO can say ok while commands still get
	// CLUSTERDOWN). EXISTS writes nothing.
	if p.me.IsMaster() && len(p.me.Slots) > 0 && len(localReasons(p, expect)) == 0 {
		p.serveKey = topology.KeyForSlot(p.me.Slots[0].Start)
		p.serveErr = c.Exists(ctx, p.serveKey).Err()
		p.serveDone = true
	}
	return p
}

// localReasons are the problems one node's own answers show.
func localReasons(p probe, expect int) []string {
	if p.err != nil {
		return []string{"no answer: " + p.err.Error()}
	}
	var r []string
	if s := p.info["cluster_state"]; s != "ok" {
		r = append(r, "cluster_state:"+s)
	}
	if k := p.info["cluster_known_nodes"]; k != strconv.Itoa(expect) {
		r = append(r, fmt.Sprintf("cluster_known_nodes:%s (want %d)", k, expect))
	}
	var trouble, unlinked []string
	for _, n := range p.nodes {
		if t := n.Trouble(); t != "" {
			trouble = append(trouble, nodeName(n)+" "+t)
		} else if !n.Connected {
			unlinked = append(unlinked, nodeName(n))
		}
		if open := n.OpenSlots(); len(open) > 0 {
			r = append(r, fmt.Sprintf("open slots on %s: %v", nodeName(n), open))
		}
	}
	if len(trouble) > 0 {
		r = append(r, "sees "+strings.Join(trouble, ", "))
	}
	if len(unlinked) > 0 {
		r = append(r, "no bus link to "+strings.Join(unlinked, ", "))
	}
	if gaps := topology.Uncovered(p.nodes); len(gaps) > 0 {
		r = append(r, fmt.Sprintf("%d slots unassigned in its view (%s)",
			topology.CountSlots(gaps), short(topology.FormatRanges(gaps))))
	}
	if p.repl["role"] == "slave" {
		if s := p.repl["master_link_status"]; s != "up" {
			r = append(r, "master_link_status:"+s)
		}
	}
	if !p.me.IsMyself() {
		r = append(r, "CLUSTER NODES has no myself line")
	} else if (p.repl["role"] == "slave") != p.me.IsReplica() {
		r = append(r, fmt.Sprintf("INFO says role:%s but CLUSTER NODES says %s", p.repl["role"], strings.Join(p.me.Flags, ",")))
	}
	return r
}

func nodeName(n topology.Node) string {
	if n.Addr != "" && n.Addr != ":0" && n.IP() != "" {
		return n.Addr
	}
	if len(n.ID) > 8 {
		return n.ID[:8]
	}
	return n.ID
}

func short(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// judge turns one round of probes into the not-ready list: each node's own
// problems, disagreement with the majority view of slots and roles, and
// failed reads.
func judge(addrs []string, res []probe, expect int) []NotReady {
	slotRef := majority(res, func(p probe) string { return p.slotSig })
	roleRef := majority(res, func(p probe) string { return p.roleSig })
	var out []NotReady
	for i, p := range res {
		r := localReasons(p, expect)
		if p.err == nil && len(p.nodes) < expect {
			if miss := missingAddrs(addrs, p.nodes); len(miss) > 0 {
				r = append(r, "does not know "+strings.Join(miss, ", "))
			}
		}
		if p.err == nil {
			if p.slotSig != slotRef.sig {
				r = append(r, fmt.Sprintf("slot map differs from the view of %s (%d of %d nodes share it): %s",
					addrs[slotRef.first], slotRef.count, len(res), slotDiff(res[slotRef.first].nodes, p.nodes)))
			}
			if p.roleSig != roleRef.sig {
				r = append(r, fmt.Sprintf("roles differ from the view of %s (%d of %d nodes share it): %s",
					addrs[roleRef.first], roleRef.count, len(res), roleDiff(res[roleRef.first].nodes, p.nodes)))
			}
		}
		if len(r) == 0 && p.serveDone && p.serveErr != nil {
			r = append(r, fmt.Sprintf("EXISTS %s (slot %d): %v", p.serveKey, topology.HashSlot(p.serveKey), p.serveErr))
		}
		if len(r) == 0 && p.me.IsMaster() && len(p.me.Slots) > 0 && !p.serveDone {
			r = append(r, "own slots not read-checked yet")
		}
		if len(r) > 0 {
			out = append(out, NotReady{Addr: addrs[i], Reason: strings.Join(r, "; ")})
		}
	}
	return out
}

// missingAddrs lists the addrs (IP:port form only; hostnames cannot be
// compared with announced IPs) that do not appear in a view. A node that
// does not know its own IP yet shows itself as ":port".
func missingAddrs(addrs []string, view []topology.Node) []string {
	known := make(map[string]bool, len(view))
	for _, n := range view {
		known[n.Addr] = true
		if n.IsMyself() && n.IP() == "" {
			known["myself:"+strconv.Itoa(n.Port())] = true
		}
	}
	var miss []string
	for _, a := range addrs {
		h, port, err := net.SplitHostPort(a)
		ip := net.ParseIP(h)
		if err != nil || ip == nil {
			continue
		}
		if !known[net.JoinHostPort(ip.String(), port)] && !known["myself:"+port] {
			miss = append(miss, a)
		}
	}
	return miss
}

type majorityView struct {
	sig   string
	count int
	first int // index of the first node holding it
}

// majority finds the signature most nodes answered with (ties: the one seen
// first in addrs order). Nodes that did not answer do not vote.
func majority(res []probe, sig func(probe) string) majorityView {
	counts := map[string]int{}
	firsts := map[string]int{}
	for i, p := range res {
		if p.err != nil {
			continue
		}
		s := sig(p)
		if _, ok := firsts[s]; !ok {
			firsts[s] = i
		}
		counts[s]++
	}
	best := majorityView{first: -1}
	for s, c := range counts {
		f := firsts[s]
		if c > best.count || (c == best.count && f < best.first) {
			best = majorityView{sig: s, count: c, first: f}
		}
	}
	return best
}

// slotDiff describes where view b's slot owners differ from view a's.
func slotDiff(a, b []topology.Node) string {
	ma, mb := topology.SlotOwners(a), topology.SlotOwners(b)
	var diff []topology.SlotRange
	for s := 0; s < topology.SlotCount; s++ {
		if ma[s] == mb[s] {
			continue
		}
		if k := len(diff); k > 0 && diff[k-1].End == s-1 {
			diff[k-1].End = s
		} else {
			diff = append(diff, topology.SlotRange{Start: s, End: s})
		}
	}
	return fmt.Sprintf("%d slots owned differently (%s)", topology.CountSlots(diff), short(topology.FormatRanges(diff)))
}

// roleDiff describes how view b's membership and roles differ from view a's.
func roleDiff(a, b []topology.Node) string {
	role := func(ns []topology.Node) map[string]string {
		m := make(map[string]string, len(ns))
		for _, n := range ns {
			switch {
			case n.IsReplica():
				m[n.ID] = "replica of " + nodeNameByID(ns, n.MasterID)
			case n.IsMaster():
				m[n.ID] = "master"
			default:
				m[n.ID] = strings.Join(n.Flags, ",")
			}
		}
		return m
	}
	ra, rb := role(a), role(b)
	var d []string
	for _, n := range b {
		x, ok := ra[n.ID]
		switch {
		case !ok && n.IsMyself():
			d = append(d, "itself ("+nodeName(n)+") is unknown to the other view")
		case !ok:
			d = append(d, "knows "+nodeName(n)+" which the other view does not")
		case x != rb[n.ID]:
			d = append(d, fmt.Sprintf("sees %s as %s, not %s", nodeName(n), rb[n.ID], x))
		}
	}
	for _, n := range a {
		if _, ok := rb[n.ID]; !ok {
			d = append(d, "does not know "+nodeName(n))
		}
	}
	sort.Strings(d)
	if len(d) > 3 {
		d = append(d[:3], fmt.Sprintf("and %d more", len(d)-3))
	}
	return strings.Join(d, ", ")
}

func nodeNameByID(ns []topology.Node, id string) string {
	if n, ok := topology.FindNode(ns, id); ok {
		return nodeName(n)
	}
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

var errNoAddrs = errors.New("no node addresses given")
