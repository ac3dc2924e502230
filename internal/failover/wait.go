package failover

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/topology"
)

// WaitFailover waits, after the master deadMaster (host:port, port or node
// id) was killed, stopped or paused, until one of its replicas has taken
// over: every reachable node agrees the replica is a master owning exactly
// the dead master's slots, the shard's other replicas follow it with their
// links up, cluster_state is ok everywhere and the new master takes a write
// (see Want; the dead master is never read, so a paused one costs nothing).
// The result times the parts from the call's start: detection (Suspected,
// Failed), election (Elected) and propagation (Agreed). Call it right after
// the fault so the times count from it. It fails at once with ErrNoReplica
// when no replica can take over automatically, and with ErrNotAgreed,
// naming the phase that did not happen, when the timeout passes first.
func WaitFailover(ctx context.Context, seeds []string, conn redisconn.Options, deadMaster string, o Options) (*Result, error) {
	start := time.Now()
	ctx, cancel := o.bound(ctx)
	defer cancel()
	p := newPoller(conn, seeds)
	defer p.close()
	p.skipNode(deadMaster)
	views := p.read(ctx)
	ref := firstOK(views)
	if ref == nil {
		return nil, fmt.Errorf("wait for failover: no node answered: %w", noAnswer(views))
	}
	d, err := findNode(ref.nodes, deadMaster)
	if err != nil {
		return nil, err
	}
	p.skipNode(d.ID)
	names := namesOf(views)
	replicas, err := heirs(authoritative(ref, views), d, names)
	if err != nil {
		return nil, err
	}
	err = errNewNodes
	res := &Result{Old: member(d), Slots: topology.MergeRanges(d.Slots)}
	var want *Want
	b := backoff()
	for {
		views, complete := p.round(ctx)
		if ctx.Err() != nil {
			break
		}
		since := time.Since(start)
		for _, v := range views {
			n, ok := topology.FindNode(v.nodes, d.ID)
			if !ok || !v.ok() {
				continue
			}
			if (n.PFailed() || n.Failed()) && res.Suspected == 0 {
				res.Suspected = since
			}
			if n.Failed() && res.Failed == 0 {
				res.Failed = since
			}
		}
		if want == nil {
			for _, r := range replicas {
				if v := viewOf(views, r.ID); v != nil && v.me.IsMaster() {
					res.Elected, res.New = since, member(v.me)
					want = &Want{Shards: []Shard{{Master: r.ID, Slots: res.Slots, Replicas: followers(views, replicas, r.ID)}}, Down: []string{d.ID}, Probe: true, OpenSlotPairs: true}
					b = backoff() // propagation takes milliseconds: poll closely again
					break
				}
			}
		}
		if want != nil {
			if cerr := carryOpenSlots(ctx, p, views, d.ID, res.New.ID, res); cerr != nil {
				err = cerr
			}
		}
		if want != nil && complete {
			a, aerr := agreed(ctx, p, views, *want)
			if aerr == nil {
				res.Agreed = time.Since(start)
				res.Unreachable = a.Unreachable
				return res, nil
			}
			err = aerr
			p.nudge(ctx, views)
		}
		if b.Wait(ctx) != nil {
			break
		}
	}
	dn := names.name(d.ID)
	switch {
	case res.Suspected == 0:
		err = fmt.Errorf("no node flags %s fail? yet: is it down? (a node suspects a peer after cluster-node-timeout without an answer)", dn)
	case res.Failed == 0:
		err = fmt.Errorf("%s is suspected (fail?) but not failed: a FAIL needs reports from a majority of the masters that own slots", dn)
	case want == nil:
		err = fmt.Errorf("%s failed but none of its replicas (%s) was elected: a replica needs a majority of the masters' votes and data not older than cluster-replica-validity-factor allows", dn, nodeNames(replicas, names))
	}
	return nil, fmt.Errorf("wait for failover of %s: %w", dn, notAgreed(ctx, start, err))
}

// heirs returns the replicas of master d, or ErrNoReplica when none of them
// may fail over automatically (d's shard can never recover by itself).
func heirs(nodes []topology.Node, d topology.Node, names namer) ([]topology.Node, error) {
	dn := names.name(d.ID)
	if !d.IsMaster() {
		return nil, fmt.Errorf("%s is not a master (%s): there is no failover to wait for", dn, roleOf(d, names))
	}
	if len(d.Slots) == 0 {
		return nil, fmt.Errorf("%s owns no slots: Redis elects no replica of an empty master", dn)
	}
	var all, ok []topology.Node
	for _, n := range nodes {
		if n.IsReplica() && n.MasterID == d.ID {
			all = append(all, n)
			if !n.HasFlag("nofailover") {
				ok = append(ok, n)
			}
		}
	}
	switch {
	case len(all) == 0:
		return nil, fmt.Errorf("%w: master %s (slots %s) has no replica, so no node takes over its slots; the cluster stays down until it is back",
			ErrNoReplica, dn, topology.FormatRanges(topology.MergeRanges(d.Slots)))
	case len(ok) == 0:
		return nil, fmt.Errorf("%w: every replica of master %s (%s) has cluster-replica-no-failover, so none takes over by itself",
			ErrNoReplica, dn, nodeNames(all, names))
	}
	return all, nil
}

// followers are the heirs other than the elected one that answer now: they
// must end up replicas of it.
func followers(views []*view, replicas []topology.Node, elected string) []string {
	var out []string
	for _, r := range replicas {
		if r.ID != elected && viewOf(views, r.ID) != nil {
			out = append(out, r.ID)
		}
	}
	return out
}

func nodeNames(nodes []topology.Node, names namer) string {
	parts := make([]string, len(nodes))
	for i, n := range nodes {
		parts[i] = names.name(n.ID)
	}
	return strings.Join(parts, ", ")
}
