package verify

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/keyslot"
)

func clientChecks() []Check {
	return []Check{
		{Name: "pipeline across nodes", Writes: true, Client: true, Run: checkPipeline},
		{Name: "atomic pipeline (MULTI/EXEC)", Writes: true, Client: true, Run: checkTxPipeline},
		{Name: "pub/sub", Writes: true, Client: true, Run: checkPubSub},
	}
}

func (e *Env) cluster() *redis.ClusterClient {
	var addrs []string
	for _, v := range e.Snap.OK() {
		addrs = append(addrs, v.Addr)
	}
	return e.Opts.Conn.Cluster(addrs)
}

// keysOnDistinctMasters returns n keys named prefix_1.. (suffixes tried in
// order) whose slots belong to n different owners in the reference map.
func keysOnDistinctMasters(e *Env, prefix string, n int) ([]string, error) {
	ref := reference(e.Snap)
	owners := map[string]bool{}
	var keys []string
	for i := 1; i <= 10000 && len(keys) < n; i++ {
		k := prefix + "_" + strconv.Itoa(i)
		o := ref[keyslot.Slot(k)]
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

func checkPipeline(ctx context.Context, e *Env) error {
	c := e.cluster()
	defer c.Close()
	keys, err := keysOnDistinctMasters(e, e.Key("key"), 2)
	if err != nil {
		return err
	}
	defer c.Del(context.WithoutCancel(ctx), keys...)
	want := []string{"42", "43"}
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, keys[0], want[0], time.Minute)
		p.Set(ctx, keys[1], want[1], time.Minute)
		p.Get(ctx, keys[0])
		p.Get(ctx, keys[1])
		return nil
	})
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	for i, k := range keys {
		got := cmds[2+i].(*redis.StringCmd).Val()
		if got != want[i] {
			return fmt.Errorf("GET %s = %q, want %q", k, got, want[i])
		}
	}
	return nil
}

func checkTxPipeline(ctx context.Context, e *Env) error {
	c := e.cluster()
	defer c.Close()
	tag := "{" + e.Key("tx") + "}"
	keys := []string{tag + ":key_1", tag + ":key_2"}
	defer c.Del(context.WithoutCancel(ctx), keys...)
	want := []string{"44", "45"}
	cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, keys[0], want[0], time.Minute)
		p.Set(ctx, keys[1], want[1], time.Minute)
		p.Get(ctx, keys[0])
		p.Get(ctx, keys[1])
		return nil
	})
	if err != nil {
		return fmt.Errorf("MULTI/EXEC: %w", err)
	}
	for i, k := range keys {
		got := cmds[2+i].(*redis.StringCmd).Val()
		if got != want[i] {
			return fmt.Errorf("GET %s in transaction = %q, want %q", k, got, want[i])
		}
	}
	return nil
}

func checkPubSub(ctx context.Context, e *Env) error {
	c := e.cluster()
	defer c.Close()
	channels := []string{e.Key("channel_1"), e.Key("channel_2")}
	sub := c.Subscribe(ctx, channels...)
	defer sub.Close()
	// Wait for both subscription confirmations.
	for range channels {
		if _, err := sub.ReceiveTimeout(ctx, e.Opts.Conn.CallTimeout()); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
	}
	const perChannel = 5
	for i := 0; i < perChannel; i++ {
		for _, ch := range channels {
			if err := c.Publish(ctx, ch, fmt.Sprintf("%s#%d", ch, i)).Err(); err != nil {
				return fmt.Errorf("publish to %s: %w", ch, err)
			}
		}
	}
	next := map[string]int{}
	for got := 0; got < perChannel*len(channels); got++ {
		msg, err := sub.ReceiveTimeout(ctx, e.Opts.Conn.CallTimeout())
		if err != nil {
			return fmt.Errorf("received %d of %d messages: %w", got, perChannel*len(channels), err)
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
