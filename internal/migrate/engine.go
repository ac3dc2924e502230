package migrate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/failover"
	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/topology"
)

// step is what is done to one slot.
type step int

const (
	// stepMove opens the slot (IMPORTING on the target, then MIGRATING on
	// the source), moves every key, and finalises.
	stepMove step = iota
	// stepHold opens the slot and moves about half its keys.
	stepHold
	// stepFinalise only checks that the source holds no key of the slot
	// and finalises (Finish, for a slot its target already owns or that
	// no node claims).
	stepFinalise
	// stepReturn moves the keys on an importing target back to the
	// slot's owner in place and closes the slot (Abort, see returnKeys).
	stepReturn
)

// pair is one slot's move, with both nodes as they describe themselves:
// ID, the announced address (which rcluster dials, and which the source's
// MIGRATE dials), slots and open slots.
type pair struct {
	slot     int
	src, dst topology.Node // src has a zero ID for stepFinalise with no source
	step     step
}

// engine holds the clients and settings of one call.
type engine struct {
	conn redisconn.Options
	o    Options

	mu      sync.Mutex
	clients map[string]*redis.Client
	masters []topology.Node          // told of each finalised slot after its target and source
	pending []pair                   // finalised, not yet told to the other masters
	rounds  map[string]chan struct{} // see roundSlot
	logMu   sync.Mutex
}

func newEngine(conn redisconn.Options, o Options) *engine {
	return &engine{conn: conn, o: o, clients: map[string]*redis.Client{}}
}

func (e *engine) close() {
	for _, c := range e.clients {
		_ = c.Close()
	}
}

// client returns the engine's client to addr: redisconn's settings (auth,
// TLS, no retries), a connection per chunk in flight and a few more, and a
// read timeout that a round of MIGRATEs each running its full
// Options.Timeout fits in (go-redis reads a whole pipeline under one
// deadline; each call is bounded by its own context anyway). redisconn's
// Node clients have 2 connections and the plain call timeout.
func (e *engine) client(addr string) *redis.Client {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.clients[addr]
	if !ok {
		t := e.conn.CallTimeout()
		c = redis.NewClient(&redis.Options{
			Addr:                  addr,
			Username:              e.conn.Username,
			Password:              e.conn.Password,
			TLSConfig:             e.conn.TLSConfig,
			DialTimeout:           t,
			ReadTimeout:           t + roundMigrates*roundsInFlight*e.o.Timeout,
			WriteTimeout:          t,
			ContextTimeoutEnabled: true,
			MaxRetries:            -1,
			DialerRetries:         1,
			PoolSize:              e.o.Parallel/min(chunkSlots, e.o.Parallel) + 4,
			DisableIdentity:       true,
			Protocol:              2,
		})
		e.clients[addr] = c
	}
	return c
}

// call sends one command to addr, bounded by the call timeout.
func (e *engine) call(ctx context.Context, addr string, args ...any) *redis.Cmd {
	cctx, cancel := context.WithTimeout(ctx, e.conn.CallTimeout())
	defer cancel()
	return e.client(addr).Do(cctx, args...)
}

func (e *engine) logf(format string, a ...any) {
	if e.o.Log == nil {
		return
	}
	e.logMu.Lock()
	defer e.logMu.Unlock()
	fmt.Fprintf(e.o.Log, format+"\n", a...)
}

// migrateArgs is MIGRATE as redis-cli sends it
// (clusterManagerMigrateKeysInReply), with REPLACE when replace is set (see
// drain) and rcluster's own credentials for the receiving node.
func migrateArgs(to topology.Node, timeout time.Duration, conn redisconn.Options, replace bool, keys []string) []any {
	args := make([]any, 0, 12+len(keys))
	args = append(args, "MIGRATE", to.IP(), to.Port(), "", 0, max(timeout.Milliseconds(), 1))
	if replace {
		args = append(args, "REPLACE")
	}
	switch {
	case conn.Username != "" && conn.Password != "":
		args = append(args, "AUTH2", conn.Username, conn.Password)
	case conn.Password != "":
		args = append(args, "AUTH", conn.Password)
	}
	args = append(args, "KEYS")
	for _, k := range keys {
		args = append(args, k)
	}
	return args
}

// notifyBatch is how many finalised slots are told to the other masters
// in one pipeline each.
const notifyBatch = 64

// notify queues a finalised slot for the other masters and tells them
// once a batch is full. They would learn it from the target's broadcast
// and gossip anyway; telling them directly is what redis-cli does, and
// one pipeline per master per batch keeps that cheap with many masters.
func (e *engine) notify(ctx context.Context, p pair) {
	e.mu.Lock()
	e.pending = append(e.pending, p)
	var batch []pair
	if len(e.pending) >= notifyBatch {
		batch, e.pending = e.pending, nil
	}
	e.mu.Unlock()
	if batch != nil {
		e.tell(ctx, batch)
	}
}

// flush tells the other masters the slots still queued.
func (e *engine) flush(ctx context.Context) {
	e.mu.Lock()
	batch := e.pending
	e.pending = nil
	e.mu.Unlock()
	if len(batch) > 0 {
		e.tell(ctx, batch)
	}
}

// tell sends SETSLOT NODE for each finalised slot to every master other
// than its source and target, one pipeline per master, in parallel. A
// failure is logged, not returned: ownership has moved already, gossip
// carries it, and the final wait checks that every node agrees.
func (e *engine) tell(ctx context.Context, batch []pair) {
	var wg sync.WaitGroup
	for _, m := range e.masters {
		var mine []pair
		for _, p := range batch {
			if m.ID != p.src.ID && m.ID != p.dst.ID {
				mine = append(mine, p)
			}
		}
		if len(mine) == 0 {
			continue
		}
		c := e.client(m.Addr)
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, e.conn.CallTimeout())
			defer cancel()
			pipe := c.Pipeline()
			cmds := make([]*redis.Cmd, len(mine))
			for i, p := range mine {
				cmds[i] = pipe.Do(cctx, "CLUSTER", "SETSLOT", p.slot, "NODE", p.dst.ID)
			}
			_, _ = pipe.Exec(cctx)
			for i, cmd := range cmds {
				if err := cmd.Err(); err != nil && !strings.Contains(err.Error(), "only with masters") {
					e.logf("slot %d: node %s: setslot node: %v (gossip will tell it)", mine[i].slot, m.Addr, err)
				}
			}
		})
	}
	wg.Wait()
}

// bound gives a wait a deadline when ctx has none.
func bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultAgreeTimeout)
}

// waitOwners polls every reachable node until each one's view shows the
// given owner (node id) of every slot. Between waves it is the whole wait
// (slots of a later wave may be open by design); at the end agree adds the
// full health check.
func (e *engine) waitOwners(ctx context.Context, seeds []string, owners map[int]string) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	b := poll.Backoff{Min: 5 * time.Millisecond, Max: 50 * time.Millisecond}
	start := time.Now()
	for {
		snap, err := e.read(ctx, seeds)
		if err == nil {
			err = ownersDiffer(snap, owners)
			if err == nil {
				return nil
			}
		}
		if b.Wait(ctx) != nil {
			return fmt.Errorf("%w after %v: %w", failover.ErrNotAgreed, time.Since(start).Round(time.Millisecond), err)
		}
	}
}

// ownersDiffer says which answering node sees which slot owned by another
// node than owners says, or nil.
func ownersDiffer(snap *snapshot, owners map[int]string) error {
	var pr []string
	for _, v := range snap.views {
		if v.err != nil {
			continue // a node that does not answer takes no part
		}
		m := topology.SlotOwners(v.nodes)
		var wrong []topology.SlotRange
		for s, id := range owners {
			if m[s] != id {
				wrong = append(wrong, topology.SlotRange{Start: s, End: s})
			}
		}
		if len(wrong) > 0 {
			pr = append(pr, fmt.Sprintf("%s does not see the new owner of slots %s yet", v.addr, truncate(topology.FormatRanges(topology.MergeRanges(wrong)), 80)))
		}
		if len(pr) >= 8 {
			break
		}
	}
	if len(pr) == 0 {
		return nil
	}
	return errors.New(strings.Join(pr, "; "))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// agree is the final wait: every reachable node sees the new owners, then
// the cluster is healthy by internal/health on every node that answers (no
// open slot, one slot map, all slots served, replica links up, epochs
// unique: failover.WaitConverged). It sets res.Agreed.
func (e *engine) agree(ctx context.Context, seeds []string, res *Result, owners map[int]string) error {
	start := time.Now()
	defer func() { res.Agreed = time.Since(start) }()
	ctx, cancel := bound(ctx)
	defer cancel()
	if err := e.waitOwners(ctx, seeds, owners); err != nil {
		return err
	}
	if _, err := failover.WaitConverged(ctx, seeds, e.conn, failover.Want{}); err != nil {
		return err
	}
	e.logf("every node agrees after %v", time.Since(start).Round(time.Millisecond))
	return nil
}

// ownersOf maps each pair's slot to its target.
func ownersOf(pairs []pair) map[int]string {
	m := make(map[int]string, len(pairs))
	for _, p := range pairs {
		m[p.slot] = p.dst.ID
	}
	return m
}
