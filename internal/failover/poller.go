package failover

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/topology"
)

// view is what one node said in one polling round.
type view struct {
	addr string
	// err is why the node gave no usable answer; unreachable tells a node
	// that did not answer at all (refused, reset, timed out: it cannot take
	// part in any agreement) from one that answered with an error (LOADING,
	// NOAUTH, a parse error: it is there and does not agree).
	err         error
	unreachable bool
	nodes       []topology.Node
	me          topology.Node
	info        map[string]string // CLUSTER INFO
	repl        map[string]string // INFO replication
}

func (v *view) ok() bool { return v.err == nil }

// poller reads every node of a cluster, round after round. It keeps one
// small client per node across rounds: a failover is decided in tens of
// milliseconds, and a new TCP connection per node per round would be a good
// part of that.
type poller struct {
	conn    redisconn.Options
	known   []string // addresses to read, seeds first
	isKnown map[string]bool
	skip    map[string]bool // ids and addresses never read (nodes known to be down)
	clients map[string]*redis.Client
	nudged  map[string]bool // "from>to" pairs nudge has introduced
}

func newPoller(conn redisconn.Options, seeds []string) *poller {
	p := &poller{conn: conn, isKnown: map[string]bool{}, skip: map[string]bool{}, clients: map[string]*redis.Client{}, nudged: map[string]bool{}}
	for _, s := range seeds {
		p.learn(s)
	}
	return p
}

// skipNode stops reading the node with this id or address: it is down
// (killed, stopped or paused), and a paused node would hold every round for
// a whole call timeout.
func (p *poller) skipNode(idOrAddr string) { p.skip[idOrAddr] = true }

// learn adds an address to read; it reports whether it is new.
func (p *poller) learn(addr string) bool {
	if p.isKnown[addr] {
		return false
	}
	p.isKnown[addr] = true
	p.known = append(p.known, addr)
	return true
}

func (p *poller) close() {
	for _, c := range p.clients {
		_ = c.Close()
	}
}

func (p *poller) client(addr string) *redis.Client {
	c, ok := p.clients[addr]
	if !ok {
		c = p.conn.SmallNode(addr)
		p.clients[addr] = c
	}
	return c
}

// read returns a complete round: every node that any answering node knows
// has been read. Discovering nodes takes at most a few rounds (seeds, then
// the nodes they know); the bound only guards against a cluster whose
// membership keeps changing.
func (p *poller) read(ctx context.Context) []*view {
	var views []*view
	for range 4 {
		var complete bool
		views, complete = p.round(ctx)
		if complete || ctx.Err() != nil {
			break
		}
	}
	return views
}

// round reads every known node in parallel, each bounded by the call
// timeout, then adds the nodes the answers name to the known set. complete
// is false when it found nodes it had not read: the round cannot be the
// one that shows agreement.
func (p *poller) round(ctx context.Context) (views []*view, complete bool) {
	var addrs []string
	for _, a := range p.known {
		if !p.skip[a] {
			addrs = append(addrs, a)
			p.client(a) // create clients before the goroutines share the map
		}
	}
	views = make([]*view, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		c := p.clients[a]
		wg.Go(func() { views[i] = readView(ctx, p.conn, c, a) })
	}
	wg.Wait()
	complete = true
	for _, v := range views {
		for _, n := range v.nodes {
			if p.skip[n.ID] {
				p.skip[n.Addr] = true
				continue
			}
			if dialable(n) && p.learn(n.Addr) {
				complete = false
			}
		}
	}
	// A seed given as the address of a skipped node is known as such only
	// once a view names it: drop what it said. A node read under two
	// addresses (a seed's alias and the one it announces) counts once.
	kept := views[:0]
	seen := map[string]bool{}
	for _, v := range views {
		if p.skip[v.addr] || (v.ok() && (p.skip[v.me.ID] || seen[v.me.ID])) {
			continue
		}
		if v.ok() {
			seen[v.me.ID] = true
		}
		kept = append(kept, v)
	}
	return kept, complete
}

// dialable: the node has a real address (not noaddr, not a handshake with a
// random id that may never settle).
func dialable(n topology.Node) bool {
	return n.Addr != "" && !strings.HasPrefix(n.Addr, ":") && !n.HasFlag("noaddr") && !n.HasFlag("handshake")
}

func readView(ctx context.Context, conn redisconn.Options, c *redis.Client, addr string) *view {
	v := &view{addr: addr}
	// A node that accepts TCP and never answers (SIGSTOPped) costs one call
	// timeout, not the caller's whole deadline.
	cctx, cancel := context.WithTimeout(ctx, conn.CallTimeout())
	defer cancel()
	pipe := c.Pipeline()
	nodesCmd := pipe.ClusterNodes(cctx)
	infoCmd := pipe.ClusterInfo(cctx)
	replCmd := pipe.Info(cctx, "replication")
	_, _ = pipe.Exec(cctx)
	if ctx.Err() != nil {
		// The caller's deadline, not the node, cut the read short: that
		// says nothing about the node, so it must not count as unreachable
		// (agreement among fewer nodes would be claimed).
		v.err = context.Cause(ctx)
		return v
	}
	for _, err := range []error{nodesCmd.Err(), infoCmd.Err(), replCmd.Err()} {
		if err != nil {
			v.err = err
			var rerr redis.Error
			v.unreachable = !errors.As(err, &rerr)
			return v
		}
	}
	nodes, err := topology.ParseNodes(nodesCmd.Val())
	if err != nil {
		v.err = err
		return v
	}
	v.nodes = nodes
	v.me, _ = topology.Myself(nodes)
	v.info = topology.ParseInfo(infoCmd.Val())
	v.repl = topology.ParseInfo(replCmd.Val())
	return v
}

// firstOK returns the first view that answered: the seeds come first, so it
// is the view of the node the caller pointed at when that one answers.
func firstOK(views []*view) *view {
	for _, v := range views {
		if v.ok() {
			return v
		}
	}
	return nil
}

// viewOf returns the answering view of the node with this id.
func viewOf(views []*view, id string) *view {
	for _, v := range views {
		if v.ok() && v.me.ID == id {
			return v
		}
	}
	return nil
}

// noAnswer describes why no node could be read.
func noAnswer(views []*view) error {
	if len(views) == 0 {
		return errors.New("no node to read: no seed address given")
	}
	var errs []error
	for _, v := range views {
		errs = append(errs, errors.New(v.addr+": "+v.err.Error()))
	}
	return errors.Join(errs...)
}

// authoritative returns the cluster's nodes as ref lists them, with each
// node that answered described by its own myself line instead (its role,
// master, slots and flags as it says them): a node knows its own role
// first, the others learn it by gossip.
func authoritative(ref *view, views []*view) []topology.Node {
	out := make([]topology.Node, 0, len(ref.nodes))
	for _, n := range ref.nodes {
		if v := viewOf(views, n.ID); v != nil {
			own := v.me
			own.Addr, own.BusPort = n.Addr, n.BusPort // how the others reach it
			own.Flags = slices.DeleteFunc(slices.Clone(own.Flags), func(f string) bool { return f == "myself" })
			n = own
		}
		out = append(out, n)
	}
	return out
}

// nudge speeds up gossip where Redis 7.0 does not broadcast: a node that
// becomes a replica (a demoted master, a replica following a new master)
// tells no one; each peer learns it from the node's next PING or PONG,
// which can take cluster-node-timeout/2 (measured: 1-2.5 s at 5000 ms,
// against ~10 ms for the election). A CLUSTER MEET sent to that node,
// naming a peer that still sees it in its old role, makes it open a
// handshake link to the peer at its next cluster cron tick (100 ms) and
// send a MEET, whose header the peer processes like a PING (cluster.c,
// "Check for role switch"); the PONG names a node the replica already
// knows, so the handshake entry is dropped at once (it shows in the
// replica's CLUSTER NODES for that moment, which agreement waits out).
//
// It only ever introduces, from a replica, a peer that answers and that
// already agrees with the replica on every slot owner (so the peer drops
// no slot it has not seen claimed elsewhere), at most once per pair per
// operation. It is only an optimisation: agreement is still polled, and a
// failed MEET is ignored (gossip gets there anyway).
func (p *poller) nudge(ctx context.Context, views []*view) {
	var ok []*view
	sigs := map[*view]string{}
	for _, v := range views {
		if v.ok() {
			ok = append(ok, v)
			sigs[v] = topology.SlotSignature(v.nodes)
		}
	}
	var wg sync.WaitGroup
	for _, x := range ok {
		if !x.me.IsReplica() {
			continue // a node that becomes a master broadcasts it itself
		}
		var meets [][]any
		for _, v := range ok {
			if v == x || sigs[v] != sigs[x] || p.nudged[x.me.ID+">"+v.me.ID] {
				continue
			}
			seen, found := topology.FindNode(v.nodes, x.me.ID)
			peer, known := topology.FindNode(x.nodes, v.me.ID)
			if !found || !known || !dialable(peer) || (seen.IsReplica() && seen.MasterID == x.me.MasterID) {
				continue
			}
			p.nudged[x.me.ID+">"+v.me.ID] = true
			meets = append(meets, []any{"CLUSTER", "MEET", peer.IP(), peer.Port(), peer.BusPort})
		}
		if len(meets) == 0 {
			continue
		}
		c := p.client(x.addr)
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, p.conn.CallTimeout())
			defer cancel()
			pipe := c.Pipeline()
			for _, m := range meets {
				pipe.Do(cctx, m...)
			}
			_, _ = pipe.Exec(cctx) // an optimisation: gossip covers a failure
		})
	}
	wg.Wait()
}
