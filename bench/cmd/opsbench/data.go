package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/topology"
)

// writeBatch is how many SETs go into one pipeline: go-redis buffers a
// whole pipeline, so a million keys are written in slices.
const writeBatch = 10000

// writeKeys writes keys "opsbench:0".."opsbench:<n-1>" through a go-redis
// ClusterClient in pipelines (which go-redis splits by node), so they
// spread over every slot, each value the key's number zero-padded to
// valueLen bytes (0: just the number). It then checks that the masters
// hold exactly n keys.
func (c *benchCluster) writeKeys(ctx context.Context, n, valueLen int) error {
	cc := redisconn.Options{Timeout: 5 * time.Second}.Cluster(c.addrs())
	defer cc.Close()
	for lo := 0; lo < n; lo += writeBatch {
		_, err := cc.Pipelined(ctx, func(p redis.Pipeliner) error {
			for k := lo; k < min(n, lo+writeBatch); k++ {
				p.Set(ctx, "opsbench:"+strconv.Itoa(k), fmt.Sprintf("%0*d", valueLen, k), 0)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("write keys %d-%d of %d: %w", lo, min(n, lo+writeBatch)-1, n, err)
		}
	}
	got, err := c.countKeys(ctx, c.addrs())
	if err != nil {
		return err
	}
	if got != int64(n) {
		return fmt.Errorf("wrote %d keys, the masters hold %d", n, got)
	}
	c.keys = n
	return nil
}

// countKeys sums DBSIZE over the masters among addrs.
func (c *benchCluster) countKeys(ctx context.Context, addrs []string) (int64, error) {
	var total int64
	for _, a := range addrs {
		cl := c.client(a)
		info, err := cl.Info(ctx, "replication").Result()
		if err != nil {
			return 0, fmt.Errorf("node %s: info replication: %w", a, err)
		}
		if topology.ParseInfo(info)["role"] != "master" {
			continue
		}
		n, err := cl.DBSize(ctx).Result()
		if err != nil {
			return 0, fmt.Errorf("node %s: dbsize: %w", a, err)
		}
		total += n
	}
	return total, nil
}

// checkData is what must hold after every slot move, once the cluster has
// settled (a master that gave away its last slot becomes a replica of the
// target and loads its data, answering LOADING meanwhile):
// `redis-cli --cluster check` passes, the masters among addrs hold exactly
// want keys, and every master's keys all sit in slots it owns (none
// stranded where no client finds them). The error names what is wrong.
func (c *benchCluster) checkData(ctx context.Context, addrs []string, want int) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	if err := c.waitSteadyAmong(ctx, addrs, poll.Backoff{Min: 5 * time.Millisecond, Max: 100 * time.Millisecond}); err != nil {
		return err
	}
	var errs []error
	if err := c.cliCheck(ctx, addrs[0]); err != nil {
		errs = append(errs, err)
	}
	got, err := c.countKeys(ctx, addrs)
	switch {
	case err != nil:
		errs = append(errs, err)
	case got != int64(want):
		errs = append(errs, fmt.Errorf("the masters hold %d keys, want %d", got, want))
	}
	if err := c.strandedKeys(ctx, addrs); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// cliCheck runs `redis-cli --cluster check` against addr: it must exit 0
// and report neither an error nor a warning (open slots are warnings).
func (c *benchCluster) cliCheck(ctx context.Context, addr string) error {
	out, _, _, err := c.run(ctx, "cluster-check", c.cfg.redisCli, "--cluster", "check", addr)
	if err != nil {
		return err
	}
	text := string(out)
	if strings.Contains(text, "[ERR]") || strings.Contains(text, "[WARNING]") || !strings.Contains(text, "[OK] All 16384 slots covered") {
		return fmt.Errorf("redis-cli --cluster check %s: %s", addr, oneLine(out))
	}
	return nil
}

// strandedKeys fails when a master among addrs holds keys outside the
// slots it owns: DBSIZE against CLUSTER COUNTKEYSINSLOT over its own slots
// (one pipeline per master).
func (c *benchCluster) strandedKeys(ctx context.Context, addrs []string) error {
	v := c.readView(ctx, addrs[0], false)
	if v.err != nil {
		return fmt.Errorf("node %s: cluster nodes: %w", addrs[0], v.err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	for _, n := range v.nodes {
		if !n.IsMaster() {
			continue
		}
		wg.Go(func() {
			err := c.ownKeysOnly(ctx, n)
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *benchCluster) ownKeysOnly(ctx context.Context, n topology.Node) error {
	cl := redisconn.Options{Timeout: 5 * time.Second}.Node(n.Addr)
	defer cl.Close()
	total, err := cl.DBSize(ctx).Result()
	if err != nil {
		return fmt.Errorf("node %s: dbsize: %w", n.Addr, err)
	}
	var counts []*redis.IntCmd
	_, err = cl.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range n.Slots {
			for s := r.Start; s <= r.End; s++ {
				counts = append(counts, p.ClusterCountKeysInSlot(ctx, s))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("node %s: cluster countkeysinslot: %w", n.Addr, err)
	}
	var own int64
	for _, cmd := range counts {
		own += cmd.Val()
	}
	if own != total {
		return fmt.Errorf("node %s holds %d keys, %d of them in its own slots %s: %d stranded", n.Addr, total, own, topology.FormatRanges(n.Slots), total-own)
	}
	return nil
}
