package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/topology"
)

// Issue 14's scale case: a 3-master cluster without replicas holding
// -scale-keys keys of 100 bytes grows to 6 masters, by an edited spec and
// `rcluster up`, or by hand with redis-cli.
const (
	scaleTo = 6

	keyRclStart  = "rcluster.start"
	keyRclJoin   = "rcluster.join"
	keyRclMove   = "rcluster.move"
	keyRclRest   = "rcluster.rest"
	keyRclBack   = "rcluster.back"
	keyHand      = "hand"
	keyHandStart = "hand.start"
	keyHandAdd   = "hand.add_node"
	keyHandJoin  = "hand.join"
	keyHandRebal = "hand.rebalance"
)

var scaleShape = shape{block: scaleTo, nodes: clusterMasters, replicas: 0}

func scaleCase(keys int) *CaseResult {
	return &CaseResult{
		Name:          fmt.Sprintf("scale %d -> %d masters, %d keys", clusterMasters, scaleTo, keys),
		NodeTimeoutMS: moveNodeTimeout.Milliseconds(),
		Rcluster:      keyRcluster,
		Hand:          keyHand,
		HandWay: fmt.Sprintf("%d redis-server nodes started with the configs `rcluster render --config PORT` gives them, "+
			"`redis-cli --cluster add-node` each, a wait until every node knows all %d and reports cluster_state:ok, "+
			"then `redis-cli --cluster rebalance --cluster-use-empty-masters`", scaleTo-clusterMasters, scaleTo),
		Parts: []Part{
			{keyRcluster, fmt.Sprintf("rcluster up -v of the spec edited to %d ports (command start to exit)", scaleTo)},
			{keyRclStart, "  rcluster: preflight, configs, start (steps' durations)"},
			{keyRclJoin, "  rcluster: join, until every node knows every node and all are healthy (step)"},
			{keyRclMove, "  rcluster: moving slots with their keys (step)"},
			{keyRclRest, "  rcluster: the rest (other steps, process start and exit)"},
			{keyHand, "hand: start + add-node + wait + rebalance"},
			{keyHandStart, fmt.Sprintf("  hand: start %d redis-server, each answering PING", scaleTo-clusterMasters)},
			{keyHandAdd, fmt.Sprintf("  hand: redis-cli --cluster add-node x%d", scaleTo-clusterMasters)},
			{keyHandJoin, "  hand: wait until every node knows all and reports cluster_state:ok"},
			{keyHandRebal, "  hand: redis-cli --cluster rebalance --cluster-use-empty-masters"},
			{keyRclBack, fmt.Sprintf("after (untimed): rcluster up of the spec back at %d ports", clusterMasters)},
			{keyRebuild, "between the ways (untimed): down --purge, up, write the keys again"},
		},
		Targets: []*Target{{Key: keyHandRebal, Over: keyRclMove, Times: speedup, Label: "redis-cli rebalance / rcluster moving slots"}},
	}
}

// scaleRun grows the cluster both ways, in alternating order, each from a
// new cluster of the same spec holding the same keys.
func scaleRun(ctx context.Context, c *benchCluster, i, keys int, s *Sample) error {
	s.Ports = c.ports()
	way := func(name string, do func(context.Context) error) func() error {
		return func() error {
			if err := c.freshData(ctx, keys, []*Sample{s}); err != nil {
				return err
			}
			sctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
			defer cancel()
			err := do(sctx)
			c.dirty = true
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		}
	}
	return alternate(i, s,
		way("rcluster", func(ctx context.Context) error { return rclusterScale(ctx, c, s) }),
		way("hand", func(ctx context.Context) error { return handScale(ctx, c, s) }))
}

// rclusterScale edits the spec to 6 ports and times `rcluster up -v`,
// splitting it into its steps; then it checks the data, scales back to 3
// (timed for information) and checks again.
func rclusterScale(ctx context.Context, c *benchCluster, s *Sample) error {
	if err := c.writeSpec(scaleTo); err != nil {
		return err
	}
	s.Load = s.Load.worse(waitQuiet(ctx, c.cfg.waitIdle))
	_, log, took, err := c.rclLog(ctx, "up", "-v", "--timeout", c.cfg.timeout.String())
	if err != nil {
		return err
	}
	steps := upSteps(string(log))
	var start, join, move time.Duration
	moved := false
	for _, st := range steps {
		switch {
		case strings.HasPrefix(st.label, "Preflight"), strings.HasPrefix(st.label, "Writing configs"), strings.HasPrefix(st.label, "Starting"):
			start += st.took
		case strings.HasPrefix(st.label, "Joining"):
			join += st.took
		case strings.HasPrefix(st.label, "Moving"):
			move += st.took
			moved = true
		}
	}
	if !moved {
		return fmt.Errorf("rcluster up -v printed no \"Moving\" step (steps: %v)", steps)
	}
	s.set(keyRcluster, took)
	s.set(keyRclStart, start)
	s.set(keyRclJoin, join)
	s.set(keyRclMove, move)
	s.set(keyRclRest, took-start-join-move)
	if err := c.mustKeep(ctx, fmt.Sprintf("rcluster up (scale %d -> %d)", clusterMasters, scaleTo), c.addrs()); err != nil {
		return err
	}
	if why := c.uneven(ctx, c.addrs(), 1); why != "" {
		s.note("after rcluster's scale: %s", why)
	}
	if err := c.writeSpec(clusterMasters); err != nil {
		return err
	}
	_, back, err := c.rcl(ctx, "up", "--timeout", c.cfg.timeout.String())
	if err != nil {
		return fmt.Errorf("scale back: %w", err)
	}
	s.set(keyRclBack, back)
	return c.mustKeep(ctx, fmt.Sprintf("rcluster up (scale back %d -> %d)", scaleTo, clusterMasters), c.addrs())
}

// step is one finished step of rcluster's output: " ✓ label (1.234s)".
type step struct {
	label string
	took  time.Duration
}

var stepLine = regexp.MustCompile(`^ [✓✗] (.+) \(([0-9][0-9.a-zµ]*)\)$`)

// upSteps are the steps `up -v` printed, in order.
func upSteps(log string) []step {
	var out []step
	for _, line := range strings.Split(log, "\n") {
		m := stepLine.FindStringSubmatch(strings.TrimRight(line, "\r"))
		if m == nil {
			continue
		}
		if d, err := time.ParseDuration(m[2]); err == nil {
			out = append(out, step{m[1], d})
		}
	}
	return out
}

// uneven says how the masters' slot counts among addrs stray from an
// even spread by more than slack slots, or "".
func (c *benchCluster) uneven(ctx context.Context, addrs []string, slack int) string {
	v := c.readView(ctx, addrs[0], false)
	if v.err != nil {
		return v.err.Error()
	}
	var counts []string
	lo, hi, masters := topology.SlotCount, 0, 0
	for _, n := range v.nodes {
		if n.IsMaster() {
			k := topology.CountSlots(n.Slots)
			lo, hi, masters = min(lo, k), max(hi, k), masters+1
			counts = append(counts, fmt.Sprintf("%s %d", n.Addr, k))
		}
	}
	if masters != len(addrs) || hi-lo > slack {
		return fmt.Sprintf("%d masters of %d nodes, slots: %s", masters, len(addrs), strings.Join(counts, ", "))
	}
	return ""
}

// handScale is the hand way: start the new nodes as rcluster would
// (rcluster render's configs, in a directory of their own), add each with
// redis-cli, wait until the cluster has taken them in (redis-cli's
// rebalance moves keys with MIGRATE, which a new master refuses for its
// first 2 s), then rebalance. Rendering the configs is not timed.
func handScale(ctx context.Context, c *benchCluster, s *Sample) error {
	confs, err := c.handConfigs(ctx)
	if err != nil {
		return err
	}
	all := make([]string, scaleTo)
	for i := range all {
		all[i] = c.addr(i)
	}
	s.Load = s.Load.worse(waitQuiet(ctx, c.cfg.waitIdle))
	t0 := time.Now()
	for k, conf := range confs {
		port := c.base + clusterMasters + k
		c.hand = append(c.hand, port)
		if _, _, _, err := c.run(ctx, "redis-server-"+strconv.Itoa(port), "redis-server", conf); err != nil {
			return err
		}
	}
	b := poll.Backoff{Min: c.cfg.pollPause, Max: c.cfg.pollPause}
	for _, a := range all[clusterMasters:] {
		for c.client(a).Ping(ctx).Err() != nil {
			if err := b.Wait(ctx); err != nil {
				return fmt.Errorf("node %s never answered PING: %w", a, err)
			}
		}
	}
	started := time.Now()
	for _, a := range all[clusterMasters:] {
		if _, _, _, err := c.run(ctx, "redis-cli-add-node", c.cfg.redisCli, "--cluster", "add-node", a, c.addr(0)); err != nil {
			return err
		}
	}
	added := time.Now()
	if err := c.waitSteadyAmong(ctx, all, b); err != nil {
		return err
	}
	joined := time.Now()
	_, _, rebal, err := c.run(ctx, "redis-cli-rebalance", c.cfg.redisCli, "--cluster", "rebalance", c.addr(0), "--cluster-use-empty-masters")
	if err != nil {
		return err
	}
	s.set(keyHandStart, started.Sub(t0))
	s.set(keyHandAdd, added.Sub(started))
	s.set(keyHandJoin, joined.Sub(added))
	s.set(keyHandRebal, rebal)
	s.set(keyHand, time.Since(t0))
	if err := c.checkData(ctx, all, c.keys); err != nil {
		return fmt.Errorf("after redis-cli rebalance: %w", err)
	}
	// redis-cli's rounding leaves up to 2 slots between masters.
	if why := c.uneven(ctx, all, 2); why != "" {
		s.note("after redis-cli's rebalance: %s", why)
	}
	return nil
}

// handConfigs renders, with `rcluster render --config`, the configs of the
// ports the scale adds, from a 6-port copy of the spec whose dir is the
// hand way's own, and makes the directories they name.
func (c *benchCluster) handConfigs(ctx context.Context) ([]string, error) {
	dir := filepath.Join(c.root, "hand")
	if err := os.RemoveAll(dir); err != nil { // the last run's nodes.conf files
		return nil, err
	}
	spec := filepath.Join(c.root, "hand.yaml")
	if err := os.WriteFile(spec, []byte(specYAML(c.name, c.base, scaleTo, 0, dir, c.nodeTimeout)), 0o600); err != nil {
		return nil, err
	}
	var confs []string
	for p := c.base + clusterMasters; p < c.base+scaleTo; p++ {
		out, _, _, err := c.run(ctx, "render-config", c.cfg.rcluster, "render", "-f", spec, "--config", strconv.Itoa(p))
		if err != nil {
			return nil, err
		}
		for _, d := range []string{"run", "log", filepath.Join("db", "redis_"+strconv.Itoa(p))} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
				return nil, err
			}
		}
		conf := filepath.Join(dir, "redis_"+strconv.Itoa(p)+".conf")
		if err := os.WriteFile(conf, out, 0o600); err != nil {
			return nil, err
		}
		confs = append(confs, conf)
	}
	return confs, nil
}

// stopHand shuts down, without saving, the nodes the hand way started
// (each proven by its pidfile, cwd and process_id first) and waits until
// they are gone.
func (c *benchCluster) stopHand(ctx context.Context) error {
	var errs []error
	for _, port := range c.hand {
		pidfile := filepath.Join(c.root, "hand", "run", "redis_"+strconv.Itoa(port)+".pid")
		pid, err := c.provenPid(ctx, port, pidfile)
		if errors.Is(err, os.ErrNotExist) {
			continue // never started
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("hand node %d: %w", port, err))
			continue
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		_ = c.client(addr).ShutdownNoSave(ctx).Err() // the connection drops: no reply
		b := poll.Backoff{Min: time.Millisecond, Max: 50 * time.Millisecond}
		for isRedisUnder(pid, c.root) {
			if err := b.Wait(ctx); err != nil {
				errs = append(errs, fmt.Errorf("hand node %d (pid %d) still running after SHUTDOWN NOSAVE: %w", port, pid, err))
				break
			}
		}
		c.clients[addr].Close()
		delete(c.clients, addr)
	}
	c.hand = nil
	return errors.Join(errs...)
}
