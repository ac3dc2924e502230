package slots

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/health"
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
// rules as WaitReady: healthy by health.Judge, and every master serves a
// read in its own slots.
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
	h := Health{NotReady: judge(res, expectNodes), Servers: make([]Server, len(res))}
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
				if res[i].Err != nil && prev != nil {
					res[i] = prev[i]
				}
			}
			nr := judge(res, expectNodes)
			if len(nr) == 0 {
				return round, nil
			}
			return round, fmt.Errorf("cluster not ready after %s (%d checks): %s: %w",
				time.Since(start).Round(time.Millisecond), round, FormatNotReady(nr), ctx.Err())
		}
		nr := judge(res, expectNodes)
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

// probe is what one node said in one round, as health judges it, plus who
// answered (INFO server, when asked). A master that looked ready by its own
// answer was also asked to serve a read in its own slots: a failure is in
// Answer.Extra.
type probe struct {
	health.Answer
	server Server
}

// withServer adds INFO server to the probe (one INFO with two sections:
// Redis 7.0+).
func probeRound(ctx context.Context, addrs []string, clients []*redis.Client, expect int, withServer bool) []probe {
	res := make([]probe, len(addrs))
	parallel(len(addrs), func(i int) { res[i] = probeNode(ctx, addrs[i], clients[i], expect, withServer) })
	return res
}

func probeNode(ctx context.Context, addr string, c *redis.Client, expect int, withServer bool) probe {
	p := probe{Answer: health.Answer{Addr: addr}}
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
		p.Err = err
		return p
	}
	p.Info = topology.ParseInfo(ci.Val())
	p.Repl = topology.ParseInfo(ir.Val())
	p.server.PID, _ = strconv.Atoi(p.Repl["process_id"])
	p.server.Port, _ = strconv.Atoi(p.Repl["tcp_port"])
	p.Nodes, p.Err = topology.ParseNodes(cn.Val())
	if p.Err != nil {
		return p
	}
	// The final proof: a master that looks ready must also serve a read in
	// its own slots (CLUSTER INFO can say ok while commands still get
	// CLUSTERDOWN). EXISTS writes nothing.
	if me, _ := topology.Myself(p.Nodes); me.IsMaster() && len(me.Slots) > 0 && len(health.Local(p.Answer, expect)) == 0 {
		key := topology.KeyForSlot(me.Slots[0].Start)
		if err := c.Exists(ctx, key).Err(); err != nil {
			p.Extra = []string{fmt.Sprintf("EXISTS %s (slot %d): %v", key, me.Slots[0].Start, err)}
		}
	}
	return p
}

// judge turns one round of probes into the not-ready list, by health's
// definition plus the reads.
func judge(res []probe, expect int) []NotReady {
	answers := make([]health.Answer, len(res))
	for i, p := range res {
		answers[i] = p.Answer
	}
	var out []NotReady
	for _, p := range health.Judge(answers, expect) {
		out = append(out, NotReady{Addr: p.Addr, Reason: strings.Join(p.Reasons, "; ")})
	}
	return out
}

var errNoAddrs = errors.New("no node addresses given")
