package verify

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/topology"
)

// clientChecks are the operations applications rely on. Each is a small
// value with its parameters so tests can break one on purpose and see the
// check fail.
func clientChecks() []Check {
	return []Check{
		{Name: "pipeline across nodes", Writes: true, Client: true, Run: pipelineCheck{values: []string{"42", "43"}}.run},
		{Name: "atomic pipeline (MULTI/EXEC)", Writes: true, Client: true, Run: txPipelineCheck{values: []string{"44", "45"}}.run},
		{Name: "optimistic transaction (WATCH)", Writes: true, Client: true, Run: watchCheck{clients: 8, increments: 25}.run},
		{Name: "pub/sub", Writes: true, Client: true, Run: pubsubCheck{perChannel: 5}.run},
		{Name: "sharded pub/sub", Writes: true, Client: true, Run: shardedPubSubCheck{}.run},
		{Name: "lua scripts", Writes: true, Client: true, Run: luaCheck{script: luaSum, args: []any{1, 2}, want: 3}.run},
		{Name: "concurrent commands", Writes: true, Client: true, Run: concurrencyCheck{workers: 32, opsPerWorker: 32}.run},
		{Name: "response timeout", Client: true, Run: timeoutCheck{timeout: 200 * time.Millisecond, block: 2 * time.Second, margin: 500 * time.Millisecond}.run},
		{Name: "MOVED redirection", Client: true, Run: movedCheck{}.run},
		{Name: "geospatial", Writes: true, Client: true, Run: geoCheck{km: 166.2742}.run},
	}
}

const luaSum = "return tonumber(ARGV[1]) + tonumber(ARGV[2])"

// answering returns the addresses of nodes that answered.
func (e *Env) answering() []string {
	var addrs []string
	for _, v := range e.Snap.OK() {
		addrs = append(addrs, v.Addr)
	}
	return addrs
}

func (e *Env) cluster() *redis.ClusterClient { return e.Opts.Conn.Cluster(e.answering()) }

// masters returns the answering masters that own slots, in address order.
func (e *Env) masters() []*NodeView {
	var out []*NodeView
	for _, v := range e.Snap.OK() {
		if v.Me.IsMaster() && len(v.Me.Slots) > 0 {
			out = append(out, v)
		}
	}
	return out
}

// cleanup deletes keys without the (possibly expired) check context.
func cleanup(ctx context.Context, c *redis.ClusterClient, keys ...string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	for _, k := range keys {
		c.Del(cctx, k)
	}
}

// keysOnDistinctMasters returns n keys named prefix_1.. (suffixes tried in
// order) whose slots belong to n different owners in the reference map.
func keysOnDistinctMasters(e *Env, prefix string, n int) ([]string, error) {
	ref := reference(e.Snap)
	owners := map[string]bool{}
	var keys []string
	for i := 1; i <= 10000 && len(keys) < n; i++ {
		k := prefix + "_" + strconv.Itoa(i)
		o := ref[topology.HashSlot(k)]
		if o == "" || owners[o] {
			continue
		}
		owners[o] = true
		keys = append(keys, k)
	}
	if len(keys) < n {
		return nil, fmt.Errorf("could not find %d keys on distinct masters (cluster has %d slot owners)", n, len(owners))
	}
	return keys, nil
}

type pipelineCheck struct{ values []string }

func (pc pipelineCheck) run(ctx context.Context, e *Env) error {
	c := e.cluster()
	defer c.Close()
	keys, err := keysOnDistinctMasters(e, e.Key("key"), 2)
	if err != nil {
		return err
	}
	defer cleanup(ctx, c, keys...)
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, keys[0], "42", time.Minute)
		p.Set(ctx, keys[1], "43", time.Minute)
		p.Get(ctx, keys[0])
		p.Get(ctx, keys[1])
		return nil
	})
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	for i, k := range keys {
		if got := cmds[2+i].(*redis.StringCmd).Val(); got != pc.values[i] {
			return fmt.Errorf("GET %s = %q, want %q", k, got, pc.values[i])
		}
	}
	return nil
}

type txPipelineCheck struct{ values []string }

func (tc txPipelineCheck) run(ctx context.Context, e *Env) error {
	c := e.cluster()
	defer c.Close()
	tag := "{" + e.Key("tx") + "}"
	keys := []string{tag + ":key_1", tag + ":key_2"}
	defer cleanup(ctx, c, keys...)
	cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, keys[0], "44", time.Minute)
		p.Set(ctx, keys[1], "45", time.Minute)
		p.Get(ctx, keys[0])
		p.Get(ctx, keys[1])
		return nil
	})
	if err != nil {
		return fmt.Errorf("MULTI/EXEC: %w", err)
	}
	for i, k := range keys {
		if got := cmds[2+i].(*redis.StringCmd).Val(); got != tc.values[i] {
			return fmt.Errorf("GET %s in transaction = %q, want %q", k, got, tc.values[i])
		}
	}
	return nil
}

// watchCheck: K clients each do M optimistic increments (WATCH, GET, MULTI
// SET, EXEC, retry on abort); the counter must end at exactly K*M.
type watchCheck struct {
	clients, increments int
	// skipWatch turns the check into a lost-update race (tests only).
	skipWatch bool
}

func (wc watchCheck) run(ctx context.Context, e *Env) error {
	key := e.Key("counter")
	ctl := e.cluster()
	defer ctl.Close()
	defer cleanup(ctx, ctl, key)
	const maxRetries = 1000
	errs := make(chan error, wc.clients)
	var wg sync.WaitGroup
	for i := 0; i < wc.clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.cluster()
			defer c.Close()
			for j := 0; j < wc.increments; j++ {
				if err := wc.increment(ctx, c, key, maxRetries); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	got, err := ctl.Get(ctx, key).Int()
	if err != nil {
		return fmt.Errorf("GET counter: %w", err)
	}
	if want := wc.clients * wc.increments; got != want {
		return fmt.Errorf("%d clients x %d increments ended at %d, want %d (lost updates)", wc.clients, wc.increments, got, want)
	}
	return nil
}

func (wc watchCheck) increment(ctx context.Context, c *redis.ClusterClient, key string, maxRetries int) error {
	txf := func(tx *redis.Tx) error {
		n, err := tx.Get(ctx, key).Int()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, key, n+1, time.Minute)
			return nil
		})
		return err
	}
	if wc.skipWatch {
		// Read-modify-write without WATCH: what the check must catch.
		n, err := c.Get(ctx, key).Int()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		_, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Set(ctx, key, n+1, time.Minute); return nil })
		return err
	}
	for r := 0; r < maxRetries; r++ {
		err := c.Watch(ctx, txf, key)
		if errors.Is(err, redis.TxFailedErr) {
			continue // another client won: retry
		}
		return err
	}
	return fmt.Errorf("increment of %s aborted %d times in a row", key, maxRetries)
}

// pubsubCheck subscribes on one node and publishes through another: every
// message must arrive once, in order, with its channel and payload.
type pubsubCheck struct {
	perChannel int
	// drop makes the subscriber lose its connection after this many
	// messages (tests only; 0 = never).
	drop int
}

func (pc pubsubCheck) run(ctx context.Context, e *Env) error {
	addrs := e.answering()
	if len(addrs) < 2 {
		return fmt.Errorf("pub/sub across nodes needs 2 answering nodes, have %d", len(addrs))
	}
	subNode, pubNode := e.Opts.Conn.Node(addrs[0]), e.Opts.Conn.Node(addrs[len(addrs)-1])
	defer subNode.Close()
	defer pubNode.Close()
	channels := []string{e.Key("channel_1"), e.Key("channel_2")}
	sub := subNode.Subscribe(ctx, channels...)
	defer sub.Close()
	for range channels {
		if _, err := sub.ReceiveTimeout(ctx, e.Opts.Conn.CallTimeout()); err != nil {
			return fmt.Errorf("subscribe on %s: %w", addrs[0], err)
		}
	}
	total := pc.perChannel * len(channels)
	for i := 0; i < pc.perChannel; i++ {
		for _, ch := range channels {
			if err := pubNode.Publish(ctx, ch, fmt.Sprintf("%s#%d", ch, i)).Err(); err != nil {
				return fmt.Errorf("publish to %s via %s: %w", ch, addrs[len(addrs)-1], err)
			}
		}
	}
	next := map[string]int{}
	for got := 0; got < total; got++ {
		if pc.drop > 0 && got == pc.drop {
			_ = sub.Close() // simulate a subscriber that misses messages
		}
		msg, err := sub.ReceiveTimeout(ctx, e.Opts.Conn.CallTimeout())
		if err != nil {
			return fmt.Errorf("subscriber on %s received %d of %d messages published via %s: %w", addrs[0], got, total, addrs[len(addrs)-1], err)
		}
		m, ok := msg.(*redis.Message)
		if !ok {
			return fmt.Errorf("unexpected pub/sub reply %T", msg)
		}
		want := fmt.Sprintf("%s#%d", m.Channel, next[m.Channel])
		if m.Payload != want {
			return fmt.Errorf("on %s got %q, want %q (lost, duplicated or out of order)", m.Channel, m.Payload, want)
		}
		next[m.Channel]++
	}
	return nil
}

// shardedPubSubCheck: SSUBSCRIBE/SPUBLISH on a channel of every shard.
type shardedPubSubCheck struct {
	// publishElsewhere publishes to another channel of the same shard
	// (tests only: the subscriber must then miss the message).
	publishElsewhere bool
}

func (sc shardedPubSubCheck) run(ctx context.Context, e *Env) error {
	c := e.cluster()
	defer c.Close()
	for _, m := range e.masters() {
		r := m.Me.Slots[0]
		// The hash tag is a key of the shard's first slot.
		ch := e.Key("shard") + ":{" + topology.KeyForSlot(r.Start) + "}"
		sub := c.SSubscribe(ctx, ch)
		err := func() error {
			defer sub.Close()
			if _, err := sub.ReceiveTimeout(ctx, e.Opts.Conn.CallTimeout()); err != nil {
				return fmt.Errorf("SSUBSCRIBE %s (shard of %s): %w", ch, m.Addr, err)
			}
			pubCh := ch
			if sc.publishElsewhere {
				pubCh = ch + ":other"
			}
			if err := c.SPublish(ctx, pubCh, "hello").Err(); err != nil {
				return fmt.Errorf("SPUBLISH %s (shard of %s): %w", ch, m.Addr, err)
			}
			msg, err := sub.ReceiveTimeout(ctx, e.Opts.Conn.CallTimeout())
			if err != nil {
				return fmt.Errorf("shard of %s: message on %s not received: %w", m.Addr, ch, err)
			}
			if mm, ok := msg.(*redis.Message); !ok || mm.Payload != "hello" || mm.Channel != ch {
				return fmt.Errorf("shard of %s: got %v, want hello on %s", m.Addr, msg, ch)
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// luaCheck runs the script on every master (EVALSHA, falling back to EVAL
// on NOSCRIPT) and a key-based script routed to the key's slot.
type luaCheck struct {
	script string
	args   []any
	want   int64
}

func (lc luaCheck) run(ctx context.Context, e *Env) error {
	script := redis.NewScript(lc.script)
	for _, m := range e.masters() {
		n := e.Opts.Conn.Node(m.Addr)
		got, err := script.Run(ctx, n, nil, lc.args...).Int64()
		n.Close()
		if err != nil {
			return fmt.Errorf("on %s: %w", m.Addr, err)
		}
		if got != lc.want {
			return fmt.Errorf("on %s: script returned %d, want %d", m.Addr, got, lc.want)
		}
	}
	c := e.cluster()
	defer c.Close()
	key := e.Key("lua")
	defer cleanup(ctx, c, key)
	setget := redis.NewScript("redis.call('SET', KEYS[1], ARGV[1], 'EX', 60) return redis.call('GET', KEYS[1])")
	got, err := setget.Run(ctx, c, []string{key}, "v").Text()
	if err != nil {
		return fmt.Errorf("script on KEYS[1]=%s (slot %d): %w", key, topology.HashSlot(key), err)
	}
	if got != "v" {
		return fmt.Errorf("script on KEYS[1] returned %q, want v", got)
	}
	return nil
}

// concurrencyCheck: many goroutines over one pooled cluster client, SET/GET
// across all slots; hash-tagged MGET works; cross-slot MGET is refused.
type concurrencyCheck struct {
	workers, opsPerWorker int
	// sameSlotCross makes the "cross-slot" MGET use one hash tag (tests
	// only: it is then not refused).
	sameSlotCross bool
}

func (cc concurrencyCheck) run(ctx context.Context, e *Env) error {
	c := e.cluster()
	defer c.Close()
	var (
		mu   sync.Mutex
		keys []string
		errs []error
	)
	var wg sync.WaitGroup
	for w := 0; w < cc.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < cc.opsPerWorker; i++ {
				k := e.Key("conc", strconv.Itoa(w), strconv.Itoa(i))
				v := strconv.Itoa(w*100000 + i)
				err := c.Set(ctx, k, v, time.Minute).Err()
				var got string
				if err == nil {
					got, err = c.Get(ctx, k).Result()
				}
				mu.Lock()
				keys = append(keys, k)
				if err == nil && got != v {
					err = fmt.Errorf("GET %s = %q, want %q", k, got, v)
				}
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	defer cleanup(ctx, c, keys...)
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d concurrent operations failed, first: %w", len(errs), cc.workers*cc.opsPerWorker, errs[0])
	}
	tag := "{" + e.Key("mget") + "}"
	tagged := []string{tag + ":a", tag + ":b", tag + ":c"}
	defer cleanup(ctx, c, tagged...)
	for i, k := range tagged {
		if err := c.Set(ctx, k, i, time.Minute).Err(); err != nil {
			return fmt.Errorf("SET %s: %w", k, err)
		}
	}
	vals, err := c.MGet(ctx, tagged...).Result()
	if err != nil {
		return fmt.Errorf("hash-tagged MGET: %w", err)
	}
	for i, v := range vals {
		if v != strconv.Itoa(i) {
			return fmt.Errorf("hash-tagged MGET[%d] = %v, want %d", i, v, i)
		}
	}
	cross, err := keysOnDistinctMasters(e, e.Key("cross"), 2)
	if err != nil {
		return err
	}
	if cc.sameSlotCross {
		cross = tagged[:2]
	}
	if err := c.MGet(ctx, cross...).Err(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		return fmt.Errorf("cross-slot MGET %v was not refused with CROSSSLOT (err %v)", cross, err)
	}
	return nil
}

// timeoutCheck: a command that blocks past the client's response timeout
// must fail with a timeout within timeout+margin, and the client must keep
// working afterwards.
type timeoutCheck struct {
	timeout, block, margin time.Duration
}

func (tc timeoutCheck) run(ctx context.Context, e *Env) error {
	o := e.Opts.Conn
	o.Timeout = tc.timeout
	o.NoRetry = true // measure one attempt, not go-redis's retries
	c := o.Cluster(e.answering())
	defer c.Close()
	key := e.Key("blocked")
	// BLPOP through Do: go-redis does not stretch the read timeout for it,
	// so the server blocks for tc.block while the client waits tc.timeout.
	start := time.Now()
	err := c.Do(ctx, "BLPOP", key, strconv.Itoa(int(math.Ceil(tc.block.Seconds())))).Err()
	el := time.Since(start)
	var ne interface{ Timeout() bool }
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		return fmt.Errorf("BLPOP blocking %s with a %s response timeout returned %v after %s, want a timeout error", tc.block, tc.timeout, err, el.Round(time.Millisecond))
	}
	if el < tc.timeout || el > tc.timeout+tc.margin {
		return fmt.Errorf("timeout took %s, want between %s and %s", el.Round(time.Millisecond), tc.timeout, tc.timeout+tc.margin)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("client unusable after a timeout: %w", err)
	}
	return nil
}

// movedCheck asks a node that does not own a key's slot and expects MOVED
// to the owner the slot map names, for a slot that matches CLUSTER KEYSLOT.
type movedCheck struct {
	// askOwner asks the owner instead (tests only: no MOVED comes back).
	askOwner bool
}

func (mc movedCheck) run(ctx context.Context, e *Env) error {
	ms := e.masters()
	if len(ms) < 2 {
		return fmt.Errorf("MOVED needs 2 masters, have %d", len(ms))
	}
	ref := reference(e.Snap)
	addrs := addrOf(e.Snap)
	key := e.Key("moved")
	slot := topology.HashSlot(key)
	owner := addrs[ref[slot]]
	var wrong *NodeView
	for _, m := range ms {
		if (m.Me.ID == ref[slot]) == mc.askOwner {
			wrong = m
			break
		}
	}
	n := e.Opts.Conn.Node(wrong.Addr)
	defer n.Close()
	ks, err := n.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return fmt.Errorf("CLUSTER KEYSLOT on %s: %w", wrong.Addr, err)
	}
	if int(ks) != slot {
		return fmt.Errorf("CLUSTER KEYSLOT %s = %d, CRC16 says %d", key, ks, slot)
	}
	err = n.Get(ctx, key).Err()
	want := fmt.Sprintf("MOVED %d %s", slot, owner)
	if err == nil || err.Error() != want {
		return fmt.Errorf("GET %s on %s: got %v, want %q", key, wrong.Addr, err, want)
	}
	return nil
}

// geoCheck: GEOADD two cities, GEODIST must be km, GEOSEARCH must find both.
type geoCheck struct{ km float64 }

func (gc geoCheck) run(ctx context.Context, e *Env) error {
	c := e.cluster()
	defer c.Close()
	key := e.Key("geo")
	defer cleanup(ctx, c, key)
	if err := c.GeoAdd(ctx, key,
		&redis.GeoLocation{Name: "Palermo", Longitude: 13.361389, Latitude: 38.115556},
		&redis.GeoLocation{Name: "Catania", Longitude: 15.087269, Latitude: 37.502669}).Err(); err != nil {
		return fmt.Errorf("GEOADD: %w", err)
	}
	d, err := c.GeoDist(ctx, key, "Palermo", "Catania", "km").Result()
	if err != nil {
		return fmt.Errorf("GEODIST: %w", err)
	}
	if math.Abs(d-gc.km) > 0.001 {
		return fmt.Errorf("GEODIST Palermo Catania = %.4f km, want %.4f", d, gc.km)
	}
	names, err := c.GeoSearch(ctx, key, &redis.GeoSearchQuery{Longitude: 15, Latitude: 37, Radius: 200, RadiusUnit: "km", Sort: "ASC"}).Result()
	if err != nil {
		return fmt.Errorf("GEOSEARCH: %w", err)
	}
	if strings.Join(names, ",") != "Catania,Palermo" {
		return fmt.Errorf("GEOSEARCH 200 km around 15,37 = %v, want [Catania Palermo]", names)
	}
	return nil
}
