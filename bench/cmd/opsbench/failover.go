package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/rcluster/rcluster/internal/failover"
	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/topology"
)

// Measures of the graceful failover case.
const (
	keyRcluster  = "rcluster" // every case: the rcluster command's wall time
	keyRclElect  = "rcluster.elected"
	keyRclAgree  = "rcluster.agreed"
	keyHandOK    = "hand.cli_ok"
	keyHandElect = "hand.elected"
	keyHandAgree = "hand.agreed"
	keyHandLink  = "hand.link_up"
)

func failoverCase(nodeTimeout time.Duration) *CaseResult {
	return &CaseResult{
		Name:          fmt.Sprintf("graceful failover, 6 nodes, node timeout %d", nodeTimeout.Milliseconds()),
		NodeTimeoutMS: nodeTimeout.Milliseconds(),
		Rcluster:      keyRcluster,
		Hand:          keyHandAgree,
		HandWay: "redis-cli -p <replica> CLUSTER FAILOVER, then every node's CLUSTER NODES polled in a tight loop " +
			"until all show the replica as master of the shard's slots and the old master as its replica",
		Parts: []Part{
			{keyRcluster, "rcluster failover <master> (command start to exit)"},
			{keyRclElect, "  rcluster: replica says it is master (elected_ns)"},
			{keyRclAgree, "  rcluster: every node agrees, old master's link up, write taken (agreed_ns)"},
			{keyHandOK, "hand: CLUSTER FAILOVER returned OK"},
			{keyHandElect, "  hand: replica says it is master"},
			{keyHandAgree, "  hand: every node shows the new roles and slots"},
			{keyHandLink, "  hand: old master's replication link up, sync done"},
		},
		Targets: []*Target{{Key: keyRcluster, MS: 500}},
	}
}

// failoverRun brings up a fresh cluster and fails over one shard each
// way, in alternating order, each path on a different shard: neither
// inherits the other's election (Redis 7.0's retry windows) or resync.
func failoverRun(ctx context.Context, cfg *config, nodeTimeout time.Duration, i int, s *Sample) error {
	c, err := newCluster(cfg, fmt.Sprintf("opsbench-failover-%d-%d", nodeTimeout.Milliseconds(), i+1), nodeTimeout, opsShape)
	if err != nil {
		return err
	}
	defer c.close()
	s.Ports = c.ports()
	if _, err := c.up(ctx); err != nil {
		return err
	}
	return alternate(i, s,
		func() error { return rclusterFailover(ctx, c, c.addr(i%clusterMasters), s) },
		func() error { return handFailover(ctx, c, c.addr((i+1)%clusterMasters), s) })
}

// alternate runs both paths, rcluster first on even runs, so warm caches
// and leftover work do not always favour the same one.
func alternate(i int, s *Sample, rcl, hand func() error) error {
	first, second := rcl, hand
	s.Order = "rcluster,hand"
	if i%2 == 1 {
		first, second = hand, rcl
		s.Order = "hand,rcluster"
	}
	if err := first(); err != nil {
		return err
	}
	return second()
}

// prepare waits, untimed, for the settled state every timed step starts
// from, and returns masterAddr's shard.
func (c *benchCluster) prepare(ctx context.Context, masterAddr string, s *Sample) (master, replica topology.Node, err error) {
	if err = c.waitSteady(ctx); err != nil {
		return
	}
	if master, replica, err = c.shard(ctx, masterAddr); err != nil {
		return
	}
	if err = c.waitElectable(ctx, replica.ID, master.ID); err != nil {
		return
	}
	s.Load = s.Load.worse(waitQuiet(ctx, c.cfg.waitIdle))
	return master, replica, nil
}

func rclusterFailover(ctx context.Context, c *benchCluster, masterAddr string, s *Sample) error {
	m, _, err := c.prepare(ctx, masterAddr, s)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	out, took, err := c.rcl(sctx, "failover", portOf(masterAddr), "--json")
	if err != nil {
		return err
	}
	var res failover.Result
	if err := json.Unmarshal(out, &res); err != nil {
		return fmt.Errorf("rcluster failover --json: %w: %q", err, out)
	}
	c.elections.record(res.New.ID, res.Old.ID, time.Now())
	s.set(keyRcluster, took)
	s.set(keyRclElect, res.Elected)
	s.set(keyRclAgree, res.Agreed)
	// rcluster says every node agrees when it returns: check that.
	if why := c.disagreement(ctx, c.addrs(), res.New.ID, m.ID, m.Slots, true); why != "" {
		s.note("rcluster failover returned before every node agreed: %s", why)
	}
	return nil
}

// disagreement is the first of addrs whose view does not show the
// failover of oldID to newID finished (and, when the old master is dead,
// cluster_state:ok), as "addr: why"; "" when all do.
func (c *benchCluster) disagreement(ctx context.Context, addrs []string, newID, oldID string, slots []topology.SlotRange, oldFollows bool) string {
	for _, a := range addrs {
		v := c.readView(ctx, a, !oldFollows)
		why := ""
		switch {
		case v.err != nil:
			why = v.err.Error()
		default:
			why = promotedIn(v.nodes, newID, oldID, slots, oldFollows)
			if why == "" && !oldFollows && v.info["cluster_state"] != "ok" {
				why = "cluster_state:" + v.info["cluster_state"]
			}
		}
		if why != "" {
			return a + ": " + why
		}
	}
	return ""
}

// handFailover is what people do: ask the replica to take over, then
// watch CLUSTER NODES until every node shows it. The watching is a tight
// loop (one round over all nodes, a -poll pause, again), so the hand way
// learns of the agreement within about a millisecond.
func handFailover(ctx context.Context, c *benchCluster, masterAddr string, s *Sample) error {
	m, r, err := c.prepare(ctx, masterAddr, s)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	t0 := time.Now()
	out, err := exec.CommandContext(sctx, c.cfg.redisCli, "-h", "127.0.0.1", "-p", strconv.Itoa(r.Port()), "CLUSTER", "FAILOVER").CombinedOutput()
	okAt := time.Now()
	if err != nil || strings.TrimSpace(string(out)) != "OK" {
		return fmt.Errorf("redis-cli -p %d CLUSTER FAILOVER: %v: %s", r.Port(), err, oneLine(out))
	}
	// One loop watches both ends: every node's view, and the old master's
	// replication link (which may come up before or after the views agree).
	var elected, agreed, linked time.Time
	b := poll.Backoff{Min: c.cfg.pollPause, Max: c.cfg.pollPause}
	for agreed.IsZero() || linked.IsZero() {
		last := ""
		if linked.IsZero() {
			if why := c.linkDown(sctx, m.Addr, r.Port()); why == "" {
				linked = time.Now()
			} else {
				last = m.Addr + ": " + why
			}
		}
		for _, a := range c.addrs() {
			if !agreed.IsZero() {
				break
			}
			v := c.readView(sctx, a, false)
			why := ""
			if v.err != nil {
				why = v.err.Error()
			} else {
				if me, _ := topology.Myself(v.nodes); a == r.Addr && me.IsMaster() && elected.IsZero() {
					elected = time.Now()
				}
				why = promotedIn(v.nodes, r.ID, m.ID, m.Slots, true)
			}
			if why != "" && last == "" {
				last = a + ": " + why
			}
		}
		if last == "" && agreed.IsZero() {
			agreed = time.Now()
		}
		if (agreed.IsZero() || linked.IsZero()) && b.Wait(sctx) != nil {
			return fmt.Errorf("hand failover %s -> %s not done after %v: %s", m.Addr, r.Addr, time.Since(t0).Round(time.Millisecond), last)
		}
	}
	c.elections.record(r.ID, m.ID, agreed)
	s.set(keyHandOK, okAt.Sub(t0))
	s.set(keyHandElect, elected.Sub(t0))
	s.set(keyHandAgree, agreed.Sub(t0))
	s.set(keyHandLink, linked.Sub(t0))
	return nil
}

// linkDown says why addr is not yet a replica of the node on masterPort
// with its link up and no sync in progress (INFO replication), or "".
func (c *benchCluster) linkDown(ctx context.Context, addr string, masterPort int) string {
	info, err := c.client(addr).Info(ctx, "replication").Result()
	if err != nil {
		return err.Error()
	}
	r := topology.ParseInfo(info)
	if r["role"] == "slave" && r["master_port"] == strconv.Itoa(masterPort) && r["master_link_status"] == "up" && r["master_sync_in_progress"] == "0" {
		return ""
	}
	return fmt.Sprintf("role %s of port %s, link %s, sync in progress %s", r["role"], r["master_port"], r["master_link_status"], r["master_sync_in_progress"])
}

// oneLine is a short, one-line rendering of a command's output.
func oneLine(out []byte) string {
	s := strings.Join(strings.Fields(string(out)), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
