package main

import (
	"context"
	"fmt"
	"time"

	"github.com/rcluster/rcluster/internal/health"
	"github.com/rcluster/rcluster/internal/topology"
)

// Measures of the reset cases.
const (
	keyRclTook    = "rcluster.took"
	keyFresh      = "fresh"
	keyFreshDown  = "fresh.down"
	keyFreshUp    = "fresh.up"
	resetNodeTime = 5000 * time.Millisecond // the template's default
)

func resetCase(failback bool, keys int) *CaseResult {
	name, target := fmt.Sprintf("reset, %d keys, no failback", keys), 100.0
	if failback {
		name, target = fmt.Sprintf("reset, %d keys, one failback", keys), 1000
	}
	return &CaseResult{
		Name:          name,
		NodeTimeoutMS: resetNodeTime.Milliseconds(),
		Rcluster:      keyRcluster,
		Hand:          keyFresh,
		HandWay:       "a fresh cluster instead: rcluster down --purge, then rcluster up of the same spec",
		Parts: []Part{
			{keyRcluster, "rcluster reset (command start to exit)"},
			{keyRclTook, "  rcluster: reset's own took_ns"},
			{keyFresh, "fresh: down --purge + up"},
			{keyFreshDown, "  fresh: rcluster down --purge"},
			{keyFreshUp, "  fresh: rcluster up"},
		},
		Targets: []*Target{{Key: keyRcluster, MS: target}, {Key: keyFresh, MS: 2000, AtLeast: true}},
	}
}

// resetRun times, on the case's one cluster holding cfg.keys keys each
// time: reset with only keys to flush, reset after one graceful failover
// (untimed), and a fresh down --purge + up, whose figures go into both
// samples. The fresh cluster is the next run's: every run starts on new
// nodes.
func resetRun(ctx context.Context, c *benchCluster, i int, plain, back *Sample) error {
	plain.Ports, back.Ports = c.ports(), c.ports()
	if err := timedReset(ctx, c, plain, false, i); err != nil {
		return fmt.Errorf("reset, no failback: %w", err)
	}
	if err := timedReset(ctx, c, back, true, i); err != nil {
		return fmt.Errorf("reset, one failback: %w", err)
	}
	if err := c.writeKeys(ctx, c.cfg.keys, 0); err != nil {
		return err
	}
	if err := c.waitSteady(ctx); err != nil {
		return err
	}
	load := waitQuiet(ctx, c.cfg.waitIdle)
	sctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	down, err := c.downPurge(sctx)
	if err != nil {
		return err
	}
	up, err := c.up(sctx)
	if err != nil {
		return err
	}
	c.elections = elections{} // new nodes, new ids
	for _, s := range []*Sample{plain, back} {
		s.Load = s.Load.worse(load)
		s.set(keyFreshDown, down)
		s.set(keyFreshUp, up)
		s.set(keyFresh, down+up)
	}
	if why := c.unsteady(ctx); why != "" {
		plain.note("rcluster up returned before the harness found the cluster steady: %s", why)
	}
	return nil
}

// timedReset writes the keys, fails over shard i first when failback is
// set (untimed), and times `rcluster reset`.
func timedReset(ctx context.Context, c *benchCluster, s *Sample, failback bool, i int) error {
	if err := c.writeKeys(ctx, c.cfg.keys, 0); err != nil {
		return err
	}
	if failback {
		m, r, err := c.prepare(ctx, c.addr(i%clusterMasters), s)
		if err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
		_, _, err = c.rcl(sctx, "failover", portOf(m.Addr), "-q")
		cancel()
		if err != nil {
			return err
		}
		c.elections.record(r.ID, m.ID, time.Now())
	}
	if err := c.waitSteady(ctx); err != nil {
		return err
	}
	s.Load = s.Load.worse(waitQuiet(ctx, c.cfg.waitIdle))
	res, took, err := c.reset(ctx)
	if err != nil {
		return err
	}
	s.set(keyRcluster, took)
	s.set(keyRclTook, res.Took)
	want := 0
	if failback {
		want = 1
	}
	if len(res.FailedBack) != want || len(res.Started) > 0 || len(res.Resumed) > 0 {
		s.note("reset did more or less than expected: %+v", res)
	}
	if why := c.resetShape(ctx); why != "" {
		s.note("rcluster reset returned before the cluster was in its planned shape: %s", why)
	}
	return nil
}

// resetShape says how the cluster differs from the state right after its
// first up (healthy by internal/health, the spec's first three ports the
// masters, no keys on them), or "".
func (c *benchCluster) resetShape(ctx context.Context) string {
	addrs := c.addrs()
	answers := make([]health.Answer, len(addrs))
	for i, a := range addrs {
		answers[i] = c.answer(ctx, a)
	}
	if p := health.Judge(answers, len(addrs)); len(p) > 0 {
		return p[0].String()
	}
	for i := range clusterMasters {
		a := answers[i]
		me, _ := topology.Myself(a.Nodes)
		if !me.IsMaster() || len(me.Slots) == 0 {
			return a.Addr + ": not a master with slots"
		}
		if n, err := c.client(a.Addr).DBSize(ctx).Result(); err != nil || n != 0 {
			return fmt.Sprintf("%s: %d keys left (%v)", a.Addr, n, err)
		}
	}
	return ""
}
