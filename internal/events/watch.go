package events

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/topology"
)

// DefaultInterval is Watch's polling interval when none is given: fast
// enough to place a failover's steps (node timeouts are seconds) without
// loading a large cluster (one CLUSTER NODES per node per interval).
const DefaultInterval = 200 * time.Millisecond

// Watch reads every node's CLUSTER NODES each interval, starting from
// seeds and adding the nodes their answers name, and calls emit with the
// events that lead from one snapshot to the next (Diff), until ctx ends,
// which is not an error. It emits a KindWatch event once it has read every
// node (what was already wrong then is the baseline, not an event) and
// another when it stops.
//
// Each node is polled by its own goroutine, each call bounded by
// conn.CallTimeout(): a hung node (SIGSTOPped, it accepts TCP and never
// answers) delays only its own answer, shows as unreachable after one call
// timeout, and the others' changes are still seen at the interval. emit is
// called from Watch's goroutine only.
func Watch(ctx context.Context, seeds []string, conn redisconn.Options, interval time.Duration, emit func(Event)) error {
	if len(seeds) == 0 {
		return errors.New("events: watch: no node address given")
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	pctx, stop := context.WithCancel(ctx)
	w := &watcher{conn: conn, interval: interval, latest: map[string]View{}, known: map[string]bool{}}
	defer w.wg.Wait()
	defer stop()
	for _, s := range seeds {
		w.add(pctx, s)
	}
	prev, err := w.baseline(pctx)
	if err != nil {
		return nil // ctx ended before the first round: nothing was watched
	}
	emit(Event{Time: prev.Time, Kind: KindWatch, Message: fmt.Sprintf("watching %s every %v", plural(len(prev.Views), "node"), interval)})
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			emit(Event{Time: time.Now(), Kind: KindWatch, Message: "stopped watching"})
			return nil
		case now := <-t.C:
			cur := w.snapshot(now)
			for _, e := range Diff(prev, cur) {
				emit(e)
			}
			w.learn(pctx, cur)
			prev = cur
		}
	}
}

// watcher holds the latest answer of every known node.
type watcher struct {
	conn     redisconn.Options
	interval time.Duration
	wg       sync.WaitGroup
	known    map[string]bool // addresses polled; Watch's goroutine only

	mu     sync.Mutex
	latest map[string]View // address -> its last answer
}

// add starts polling addr, once.
func (w *watcher) add(ctx context.Context, addr string) {
	if w.known[addr] {
		return
	}
	w.known[addr] = true
	w.wg.Go(func() { w.poll(ctx, addr) })
}

// poll reads addr at once, then every interval, until ctx ends.
func (w *watcher) poll(ctx context.Context, addr string) {
	c := w.conn.SmallNode(addr)
	defer c.Close()
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		v := readView(ctx, w.conn, c, addr)
		if ctx.Err() != nil {
			return // cut short by the end of the watch: says nothing of the node
		}
		w.mu.Lock()
		w.latest[addr] = v
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// snapshot is the latest answer of every node that has answered (or
// failed to) at least once.
func (w *watcher) snapshot(now time.Time) Snapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	return Snapshot{Time: now, Views: maps.Clone(w.latest)}
}

// learn polls the nodes the answers name that no answering node already
// is: a node read through a seed's alias is not read twice, and a node
// that is down is polled at the address the cluster knows it by.
func (w *watcher) learn(ctx context.Context, s Snapshot) {
	covered := map[string]bool{}
	for _, v := range s.Views {
		if me, ok := topology.Myself(v.Nodes); ok && v.Err == "" {
			covered[me.ID] = true
		}
	}
	for _, a := range sortedKeys(s.Views) {
		for _, n := range s.Views[a].Nodes {
			if !covered[n.ID] && dialable(n) && !n.HasFlag("handshake") {
				w.add(ctx, n.Addr)
			}
		}
	}
}

// baseline waits until every known node has answered once (each poll is
// bounded by the call timeout), learning the nodes they name, and returns
// that first snapshot. The discovery is bounded: a cluster whose
// membership keeps changing gets no more than a few rounds.
func (w *watcher) baseline(ctx context.Context) (Snapshot, error) {
	b := poll.Backoff{Min: 5 * time.Millisecond, Max: 50 * time.Millisecond}
	for range 4 {
		for {
			s := w.snapshot(time.Now())
			if len(s.Views) == len(w.known) {
				break
			}
			if err := b.Wait(ctx); err != nil {
				return Snapshot{}, err
			}
		}
		s := w.snapshot(time.Now())
		n := len(w.known)
		w.learn(ctx, s)
		if len(w.known) == n {
			return s, nil
		}
	}
	return w.snapshot(time.Now()), nil
}

func readView(ctx context.Context, conn redisconn.Options, c *redis.Client, addr string) View {
	cctx, cancel := context.WithTimeout(ctx, conn.CallTimeout())
	defer cancel()
	txt, err := c.ClusterNodes(cctx).Result()
	if err != nil {
		return View{Err: err.Error()}
	}
	nodes, err := topology.ParseNodes(txt)
	if err != nil {
		return View{Err: fmt.Sprintf("node %s: %v", addr, err)}
	}
	if _, ok := topology.Myself(nodes); !ok {
		return View{Err: "CLUSTER NODES has no myself line"}
	}
	return View{Nodes: nodes}
}
