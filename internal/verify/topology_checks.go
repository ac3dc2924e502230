package verify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/rcluster/rcluster/internal/health"
)

// healthChecks are the topology checks that are criteria of health's
// definition, grouped under verify's names. Every criterion but the
// caller's own probes (health.Extra) is in one of them, so these checks all
// pass exactly when health.Judge finds the cluster healthy: verify cannot
// disagree with up's readiness or with status.
var healthChecks = []struct {
	name     string
	criteria []health.Criterion
	also     func(*Env) problems // what verify checks beyond health
}{
	{"cluster_state ok", []health.Criterion{health.Answered, health.State}, nil},
	{"slots covered", []health.Criterion{health.ViewCoverage, health.SlotsServed}, nil},
	{"slot map agreement", []health.Criterion{health.SlotAgreement}, nil},
	{"no open slots", []health.Criterion{health.OpenSlots}, nil},
	{"no failed nodes", []health.Criterion{health.Flags, health.BusLinks}, nil},
	{"known nodes", []health.Criterion{health.KnownNodes, health.KnowsAll}, nil},
	{"masters and replicas", []health.Criterion{health.Role, health.RoleAgreement}, checkRoles},
	{"replica links up", []health.Criterion{health.ReplicaLink}, nil},
	{"config epochs unique", []health.Criterion{health.Epochs}, nil},
}

func topologyChecks() []Check {
	var out []Check
	for _, hc := range healthChecks {
		out = append(out, Check{Name: hc.name, Run: assess(hc.criteria, hc.also)})
	}
	return append(out, Check{Name: "shards healthy", Run: checkShards})
}

// assess runs health's criteria on the snapshot, each finding one problem
// naming the node (Expect.Nodes is the expected node count), then also.
func assess(cs []health.Criterion, also func(*Env) problems) func(context.Context, *Env) error {
	return func(_ context.Context, e *Env) error {
		var p problems
		for _, f := range health.Assess(e.Snap.Answers(), e.Opts.Expect.Nodes, cs...) {
			p = append(p, f.String())
		}
		if also != nil {
			p = append(p, also(e)...)
		}
		return p.err()
	}
}

// problems collects failures; err joins them (at most 10 shown).
type problems []string

func (p *problems) add(format string, a ...any) { *p = append(*p, fmt.Sprintf(format, a...)) }

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	shown := p
	more := ""
	if len(shown) > 10 {
		shown, more = shown[:10], fmt.Sprintf("; and %d more", len(p)-10)
	}
	return errors.New(strings.Join(shown, "; ") + more)
}

func name(addrs map[string]string, id string) string {
	if a, ok := addrs[id]; ok && a != "" && !strings.HasPrefix(a, ":") {
		return a
	}
	if len(id) > 8 {
		return "node " + id[:8]
	}
	return "node " + id
}

// checkRoles compares the roles nodes claim for themselves with what is
// expected: the number of slot-owning masters, replicas per master, and
// replicas of nodes that are no such master.
func checkRoles(e *Env) problems {
	// Roles as each node says of itself.
	masters := map[string]string{} // id -> addr (masters owning slots)
	replicasOf := map[string][]string{}
	for _, v := range e.Snap.OK() {
		switch {
		case v.Me.IsMaster() && len(v.Me.Slots) > 0:
			masters[v.Me.ID] = v.Addr
		case v.Me.IsReplica():
			replicasOf[v.Me.MasterID] = append(replicasOf[v.Me.MasterID], v.Addr)
		}
	}
	addrs := addrOf(e.Snap)
	var p problems
	if want := e.Opts.Expect.Masters; want > 0 && len(masters) != want {
		p.add("%d masters own slots, expected %d", len(masters), want)
	}
	if want := e.Opts.Expect.Replicas; want >= 0 && e.Opts.Expect.Masters > 0 {
		ids := make([]string, 0, len(masters))
		for id := range masters {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return masters[ids[i]] < masters[ids[j]] })
		for _, id := range ids {
			if got := len(replicasOf[id]); got != want {
				p.add("master %s has %d replicas, expected %d", masters[id], got, want)
			}
		}
	}
	for mid, reps := range replicasOf {
		if _, ok := masters[mid]; !ok {
			p.add("%s replicate %s, which is not a master owning slots", strings.Join(reps, ", "), name(addrs, mid))
		}
	}
	return p
}

// checkShards reads CLUSTER SHARDS health. Redis 7.0 reports a replica as
// "loading" while the offset it gossips is still 0, which lasts until the
// first replication traffic even though its link is up; such a replica is
// judged by its own INFO replication instead.
func checkShards(_ context.Context, e *Env) error {
	self := map[string]*NodeView{}
	for _, v := range e.Snap.OK() {
		self[v.Addr] = v
	}
	var p problems
	for _, v := range e.Snap.OK() {
		if v.ShardsErr != nil {
			p.add("%s: CLUSTER SHARDS: %v", v.Addr, v.ShardsErr)
			continue
		}
		for _, sh := range v.Shards {
			for _, n := range sh.Nodes {
				if n.Health == "online" {
					continue
				}
				addr := fmt.Sprintf("%s:%d", n.IP, cmp.Or(n.Port, n.TLSPort)) // TLS-only nodes report tls-port alone
				if n.Health == "loading" && n.Role == "replica" {
					if sv, ok := self[addr]; ok && sv.Repl["master_link_status"] == "up" && sv.Repl["master_sync_in_progress"] != "1" {
						continue
					}
				}
				p.add("%s says %s (%s) is %s", v.Addr, addr, n.Role, n.Health)
			}
		}
	}
	return p.err()
}
