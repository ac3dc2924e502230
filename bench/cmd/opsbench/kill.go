package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/rcluster/rcluster/internal/failover"
	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/topology"
)

// Measures of the kill case. rcluster's parts count from the start of its
// operation (after the process started and read the spec), the harness's
// from the command start or the SIGKILL.
const (
	keyRclSuspect = "rcluster.suspected"
	keyRclFail    = "rcluster.failed"
	keyRclDetect  = "rcluster.detection"
	keyRclElectn  = "rcluster.election"
	keyRclPropag  = "rcluster.propagation"
	keyRclWrite   = "rcluster.first_write"
	keyRclReset   = "rcluster.reset_after"
	keyHandSusp   = "hand.suspected"
	keyHandFail   = "hand.failed"
	keyHandWrite  = "hand.first_write"
)

func killCase(nodeTimeout time.Duration) *CaseResult {
	return &CaseResult{
		Name:          fmt.Sprintf("node kill --wait-failover, node timeout %d", nodeTimeout.Milliseconds()),
		NodeTimeoutMS: nodeTimeout.Milliseconds(),
		Rcluster:      keyRcluster,
		Hand:          keyHandAgree,
		HandWay: "kill -9 <master pid>, then the survivors' CLUSTER NODES and CLUSTER INFO polled in a tight loop " +
			"until all show the replica as master of the slots and cluster_state:ok",
		Parts: []Part{
			{keyRcluster, "rcluster node kill <master> --wait-failover (command start to exit)"},
			{keyRclDetect, "  rcluster: detection = a node flags it fail (failed_ns)"},
			{keyRclSuspect, "    rcluster: first fail? seen (suspected_ns)"},
			{keyRclElectn, "  rcluster: election = elected_ns - failed_ns"},
			{keyRclPropag, "  rcluster: propagation = agreed_ns - elected_ns"},
			{keyRclAgree, "  rcluster: agreed_ns (every survivor agrees, write taken)"},
			{keyRclWrite, "  client: first write acknowledged by the replica, from command start"},
			{keyRclReset, "  rcluster reset afterwards (untimed step, for reference)"},
			{keyHandSusp, "hand: a survivor flags it fail?"},
			{keyHandFail, "  hand: a survivor flags it fail"},
			{keyHandElect, "  hand: replica says it is master"},
			{keyHandWrite, "  hand: first write acknowledged by the replica"},
			{keyHandAgree, "  hand: every survivor shows it, cluster_state:ok"},
		},
		Targets: []*Target{{Key: keyRcluster, MS: float64((nodeTimeout + 1500*time.Millisecond).Milliseconds())}},
	}
}

// nodeResult is one element of `rcluster node ... --json`.
type nodeResult struct {
	Node     string           `json:"node"`
	Failover *failover.Result `json:"failover"`
	Took     time.Duration    `json:"took_ns"`
}

// resetResult is `rcluster reset --json`.
type resetResult struct {
	Started    []string      `json:"started"`
	Resumed    []string      `json:"resumed"`
	FailedBack []string      `json:"failed_back"`
	Replicated []string      `json:"replicated"`
	Flushed    int           `json:"flushed"`
	Took       time.Duration `json:"took_ns"`
}

// killRun kills one master each way on the case's one cluster, restoring
// it with `rcluster reset` after each; runs rotate over the shards.
func killRun(ctx context.Context, c *benchCluster, i int, s *Sample) error {
	s.Ports = c.ports()
	return alternate(i, s,
		func() error { return rclusterKill(ctx, c, c.addr(i%clusterMasters), s) },
		func() error { return handKill(ctx, c, c.addr((i+1)%clusterMasters), s) })
}

func rclusterKill(ctx context.Context, c *benchCluster, masterAddr string, s *Sample) error {
	m, r, err := c.prepare(ctx, masterAddr, s)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	pctx, stopProbe := context.WithCancel(sctx)
	defer stopProbe()
	t0 := time.Now()
	probe := startWriteProbe(pctx, r.Addr, keyOf(m.Slots), c.cfg.pollPause)
	out, took, err := c.rcl(sctx, "node", "kill", portOf(masterAddr), "--wait-failover", "--json")
	if err != nil {
		return err
	}
	var res []nodeResult
	if err := json.Unmarshal(out, &res); err != nil || len(res) != 1 || res[0].Failover == nil {
		return fmt.Errorf("rcluster node kill --json: want one result with a failover (%v): %q", err, out)
	}
	f := res[0].Failover
	c.elections.record(f.New.ID, f.Old.ID, time.Now())
	s.set(keyRcluster, took)
	s.set(keyRclSuspect, f.Suspected)
	s.set(keyRclFail, f.Failed)
	s.set(keyRclDetect, f.Failed)
	s.set(keyRclElectn, f.Elected-f.Failed)
	s.set(keyRclPropag, f.Agreed-f.Elected)
	s.set(keyRclAgree, f.Agreed)
	survivors := without(c.addrs(), m.Addr)
	if why := c.disagreement(ctx, survivors, f.New.ID, m.ID, m.Slots, false); why != "" {
		s.note("rcluster node kill --wait-failover returned before every survivor agreed: %s", why)
	}
	at, err := probe.wait(sctx)
	if err != nil {
		return fmt.Errorf("after rcluster node kill: %w", err)
	}
	s.set(keyRclWrite, at.Sub(t0))
	_, took, err = c.reset(ctx)
	s.set(keyRclReset, took)
	return err
}

// handKill is the hand way: SIGKILL the master's process (proven to be
// that node first), then watch the survivors until they agree.
func handKill(ctx context.Context, c *benchCluster, masterAddr string, s *Sample) error {
	m, r, err := c.prepare(ctx, masterAddr, s)
	if err != nil {
		return err
	}
	pid, err := c.provenPid(ctx, m.Port(), c.pidfile(m.Port()))
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	pctx, stopProbe := context.WithCancel(sctx)
	defer stopProbe()
	survivors := without(c.addrs(), m.Addr)
	t0 := time.Now()
	probe := startWriteProbe(pctx, r.Addr, keyOf(m.Slots), c.cfg.pollPause)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("node %s: kill %d: %w", m.Addr, pid, err)
	}
	var suspected, failed, elected, agreed time.Time
	b := poll.Backoff{Min: c.cfg.pollPause, Max: c.cfg.pollPause}
	for agreed.IsZero() {
		last := ""
		for _, a := range survivors {
			v := c.readView(sctx, a, true)
			why := ""
			if v.err != nil {
				why = v.err.Error()
			} else {
				now := time.Now()
				if d, ok := topology.FindNode(v.nodes, m.ID); ok {
					if (d.PFailed() || d.Failed()) && suspected.IsZero() {
						suspected = now
					}
					if d.Failed() && failed.IsZero() {
						failed = now
					}
				}
				if me, _ := topology.Myself(v.nodes); a == r.Addr && me.IsMaster() && elected.IsZero() {
					elected = now
				}
				why = promotedIn(v.nodes, r.ID, m.ID, m.Slots, false)
				if why == "" && v.info["cluster_state"] != "ok" {
					why = "cluster_state:" + v.info["cluster_state"]
				}
			}
			if why != "" && last == "" {
				last = a + ": " + why
			}
		}
		if last == "" {
			agreed = time.Now()
		} else if b.Wait(sctx) != nil {
			return fmt.Errorf("hand kill of %s: survivors not agreed after %v: %s", m.Addr, time.Since(t0).Round(time.Millisecond), last)
		}
	}
	c.elections.record(r.ID, m.ID, agreed)
	at, err := probe.wait(sctx)
	if err != nil {
		return fmt.Errorf("after kill -9 of %s: %w", m.Addr, err)
	}
	// The flags persist (the master stays dead, the replica stays master),
	// so the agreeing round saw each phase at the latest.
	s.set(keyHandSusp, suspected.Sub(t0))
	s.set(keyHandFail, failed.Sub(t0))
	s.set(keyHandElect, elected.Sub(t0))
	s.set(keyHandWrite, at.Sub(t0))
	s.set(keyHandAgree, agreed.Sub(t0))
	_, _, err = c.reset(ctx)
	return err
}

// reset runs `rcluster reset --json`, records the failbacks it made as
// elections, and returns its result and wall time.
func (c *benchCluster) reset(ctx context.Context) (resetResult, time.Duration, error) {
	var res resetResult
	before, err := c.anyNodes(ctx)
	if err != nil {
		return res, 0, err
	}
	sctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	out, took, err := c.rcl(sctx, "reset", "--json")
	if err != nil {
		return res, took, err
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return res, took, fmt.Errorf("rcluster reset --json: %w: %q", err, out)
	}
	after, err := c.anyNodes(ctx)
	if err != nil {
		return res, took, err
	}
	c.elections.recordChanges(before, after, time.Now())
	return res, took, nil
}

func without(addrs []string, drop string) []string {
	return slices.DeleteFunc(slices.Clone(addrs), func(a string) bool { return a == drop })
}
