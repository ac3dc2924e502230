package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/rcluster/rcluster/internal/migrate"
	"github.com/rcluster/rcluster/internal/topology"
)

// Issue 14's reshard case: move one third of the slots (all of the first
// master's 5461) of a 3-master cluster without replicas to the third
// master, the cluster holding -reshard-keys keys of 100 bytes spread over
// every slot.
const (
	reshardSlots = 5461
	valueLen     = 100
	// moveNodeTimeout is issue 14's cluster-node-timeout (the template's
	// default).
	moveNodeTimeout = 5000 * time.Millisecond
	// speedup is issue 14's target: rcluster at least this many times
	// faster than redis-cli.
	speedup = 5

	keyRclElapsed = "rcluster.elapsed"
	keyRclWait    = "rcluster.agree_wait"
	keyRebuild    = "rebuild"
	keyHandCli    = "hand.cli"
	keyHandCliP   = "hand.cli_pipeline"
	cliPipeline   = 1000
)

var moveShape = shape{block: 3, nodes: 3, replicas: 0}

// reshardCases are the two rows of one cluster's runs: rcluster against
// redis-cli with its default pipeline (10 keys per MIGRATE), and against
// redis-cli --cluster-pipeline 1000. They share rcluster's figures.
func reshardCases(keys int) (plain, piped *CaseResult) {
	mk := func(hand, handLabel, how string) *CaseResult {
		return &CaseResult{
			Name:          fmt.Sprintf("reshard %d slots, %d keys, vs %s", reshardSlots, keys, handLabel),
			NodeTimeoutMS: moveNodeTimeout.Milliseconds(),
			Rcluster:      keyRcluster,
			Hand:          hand,
			HandWay: fmt.Sprintf("redis-cli --cluster reshard <master1> --cluster-from <master1 id> --cluster-to <master3 id> "+
				"--cluster-slots %d --cluster-yes%s (command start to exit)", reshardSlots, how),
			Parts: []Part{
				{keyRcluster, fmt.Sprintf("rcluster reshard --from <master1> --to <master3> --slots %d (command start to exit)", reshardSlots)},
				{keyRclElapsed, "  rcluster: the move itself (result.elapsed_ns)"},
				{keyRclWait, "  rcluster: of it, waiting for every node to agree (result.agreed_ns)"},
				{hand, "hand: " + handLabel},
				{keyRebuild, "between two ways (untimed): down --purge, up, write the keys again"},
			},
			Targets: []*Target{{Key: hand, Over: keyRcluster, Times: speedup, Label: handLabel + " / rcluster"}},
		}
	}
	return mk(keyHandCli, "redis-cli reshard", ""),
		mk(keyHandCliP, fmt.Sprintf("redis-cli reshard --cluster-pipeline %d", cliPipeline), fmt.Sprintf(" --cluster-pipeline %d", cliPipeline))
}

// reshardRun moves the slots three ways on the case's cluster, in an order
// that rotates with the run: rcluster, redis-cli, redis-cli with a 1000-key
// pipeline. Each starts from a new cluster (down --purge and up of the
// same spec) holding the same keys: moving all of a master's slots makes
// Redis 7 turn it into a replica of the target
// (cluster-allow-replica-migration), which no reshard back undoes.
func reshardRun(ctx context.Context, c *benchCluster, i, keys int, plain, piped *Sample) error {
	plain.Ports, piped.Ports = c.ports(), c.ports()
	both := []*Sample{plain, piped}
	ways := []struct {
		name string
		do   func(ctx context.Context, from, to topology.Node) error
	}{
		{"rcluster", func(ctx context.Context, from, to topology.Node) error {
			return rclusterReshard(ctx, c, from, to, both)
		}},
		{"redis-cli", func(ctx context.Context, from, to topology.Node) error {
			return cliReshard(ctx, c, from, to, plain, keyHandCli)
		}},
		{"redis-cli-pipeline", func(ctx context.Context, from, to topology.Node) error {
			return cliReshard(ctx, c, from, to, piped, keyHandCliP, "--cluster-pipeline", strconv.Itoa(cliPipeline))
		}},
	}
	order := ""
	for k := range ways {
		w := ways[(i+k)%len(ways)]
		order += "," + w.name
		if err := c.freshData(ctx, keys, both); err != nil {
			return err
		}
		from, to, err := c.reshardEnds(ctx)
		if err != nil {
			return err
		}
		load := waitQuiet(ctx, c.cfg.waitIdle)
		for _, s := range both {
			s.Load = s.Load.worse(load)
		}
		sctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
		err = w.do(sctx, from, to)
		cancel()
		c.dirty = true
		if err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
	}
	plain.Order, piped.Order = order[1:], order[1:]
	return nil
}

// freshData gives the next timed step its starting point: a new cluster
// of the first spec (when a timed step changed the last one; nodes the
// hand way added are stopped first) holding keys keys of valueLen bytes,
// settled. The rebuild's time goes into samples.
func (c *benchCluster) freshData(ctx context.Context, keys int, samples []*Sample) error {
	if c.dirty {
		t0 := time.Now()
		if err := c.stopHand(ctx); err != nil {
			return err
		}
		if _, err := c.downPurge(ctx); err != nil {
			return err
		}
		if err := c.writeSpec(c.shape.nodes); err != nil {
			return err
		}
		if _, err := c.up(ctx); err != nil {
			return err
		}
		c.keys, c.dirty = 0, false
		if err := c.writeKeys(ctx, keys, valueLen); err != nil {
			return err
		}
		for _, s := range samples {
			s.set(keyRebuild, time.Since(t0))
		}
	}
	if c.keys != keys {
		if err := c.writeKeys(ctx, keys, valueLen); err != nil {
			return err
		}
	}
	return c.waitSteady(ctx)
}

// reshardEnds are the first node (master of the plan's first third) and
// the third, as the first node sees them.
func (c *benchCluster) reshardEnds(ctx context.Context) (from, to topology.Node, err error) {
	v := c.readView(ctx, c.addr(0), false)
	if v.err != nil {
		return from, to, fmt.Errorf("node %s: cluster nodes: %w", c.addr(0), v.err)
	}
	for _, n := range v.nodes {
		switch n.Addr {
		case c.addr(0):
			from = n
		case c.addr(2):
			to = n
		}
	}
	if topology.CountSlots(from.Slots) != reshardSlots || !from.IsMaster() || !to.IsMaster() {
		return from, to, fmt.Errorf("node %s does not own %d slots (%s) or %s is no master: not the planned layout",
			c.addr(0), reshardSlots, topology.FormatRanges(from.Slots), c.addr(2))
	}
	return from, to, nil
}

// rclusterReshard times `rcluster reshard` and then checks, untimed, that
// no key was lost.
func rclusterReshard(ctx context.Context, c *benchCluster, from, to topology.Node, samples []*Sample) error {
	out, took, err := c.rcl(ctx, "reshard", "--from", portOf(from.Addr), "--to", portOf(to.Addr),
		"--slots", strconv.Itoa(reshardSlots), "--timeout", c.cfg.timeout.String(), "--json")
	if err != nil {
		return err
	}
	var plan struct {
		Moves  []json.RawMessage `json:"moves"`
		Result *migrate.Result   `json:"result"`
	}
	if err := json.Unmarshal(out, &plan); err != nil || plan.Result == nil {
		return fmt.Errorf("rcluster reshard --json: want a plan with a result (%v): %q", err, out)
	}
	for _, s := range samples {
		s.set(keyRcluster, took)
		s.set(keyRclElapsed, plan.Result.Elapsed)
		s.set(keyRclWait, plan.Result.Agreed)
	}
	if len(plan.Moves) != reshardSlots || len(plan.Result.Moves) != reshardSlots {
		samples[0].note("rcluster reshard planned %d and moved %d slots, not %d", len(plan.Moves), len(plan.Result.Moves), reshardSlots)
	}
	return c.mustKeep(ctx, "rcluster reshard", c.addrs())
}

// mustKeep checks the data after an rcluster command (see checkData) and
// shouts when it fails: that is data loss.
func (c *benchCluster) mustKeep(ctx context.Context, what string, addrs []string) error {
	if err := c.checkData(ctx, addrs, c.keys); err != nil {
		fmt.Fprintf(c.cfg.progressOut, "opsbench: !!! DATA CHECK FAILED after %s on %s (%d keys written): %v\n", what, c.ports(), c.keys, err)
		return fmt.Errorf("DATA CHECK FAILED after %s: %w", what, err)
	}
	return nil
}

// cliReshard times redis-cli's reshard of the same slots, then checks the
// data the same way (a failure there fails the run: the next one would not
// start from identical data).
func cliReshard(ctx context.Context, c *benchCluster, from, to topology.Node, s *Sample, key string, extra ...string) error {
	argv := append([]string{"--cluster", "reshard", from.Addr, "--cluster-from", from.ID, "--cluster-to", to.ID,
		"--cluster-slots", strconv.Itoa(reshardSlots), "--cluster-yes"}, extra...)
	_, _, took, err := c.run(ctx, "redis-cli-reshard", c.cfg.redisCli, argv...)
	if err != nil {
		return err
	}
	s.set(key, took)
	if err := c.checkData(ctx, c.addrs(), c.keys); err != nil {
		return fmt.Errorf("after redis-cli reshard: %w", err)
	}
	v := c.readView(ctx, to.Addr, false)
	if me, _ := topology.Myself(v.nodes); v.err == nil && topology.CountSlots(me.Slots) != topology.CountSlots(to.Slots)+reshardSlots {
		s.note("redis-cli moved %d slots, not %d", topology.CountSlots(me.Slots)-topology.CountSlots(to.Slots), reshardSlots)
	}
	return nil
}
