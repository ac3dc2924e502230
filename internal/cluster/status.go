package cluster

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/health"
	"github.com/rcluster/rcluster/internal/provider"
	"github.com/rcluster/rcluster/internal/topology"
)

// NodeStatus is one node as status shows it.
type NodeStatus struct {
	Addr    string `json:"addr"`
	Port    int    `json:"port"`
	Pid     int    `json:"pid"`
	Running bool   `json:"running"`
	// Paused: running but frozen (SIGSTOP, docker pause).
	Paused bool `json:"paused,omitempty"`
	// Partitioned: running but cut off the cluster's network.
	Partitioned bool `json:"partitioned,omitempty"`
	// Unproven: a live process may be this node but cannot be proven to
	// be (it is neither reported running nor stopped).
	Unproven bool   `json:"unproven,omitempty"`
	ID       string `json:"id,omitempty"`
	Role     string `json:"role,omitempty"`
	Master   string `json:"master,omitempty"`
	Slots    string `json:"slots,omitempty"`
	State    string `json:"cluster_state,omitempty"`
	Link     string `json:"link,omitempty"` // replica: master_link_status
	Keys     int64  `json:"keys"`
	Memory   string `json:"memory,omitempty"`
	Flags    string `json:"flags,omitempty"`
	Detail   string `json:"detail,omitempty"`

	// answer is what the node said, judged by Problems (health.Judge).
	answer *health.Answer
}

// NodeStatuses gathers every node's state (from its provider) and cluster
// state (from the node) in parallel, on any runtime. A node that does not
// answer gets its role, flags and link state from what the answering nodes
// say of it (e.g. "master,fail", "disconnected").
func (c *Cluster) NodeStatuses(ctx context.Context) []NodeStatus {
	out, _ := c.nodeStatuses(ctx)
	return out
}

// nodeStatuses is NodeStatuses that also says when the runtime could not
// be asked (then every node's Detail says why).
func (c *Cluster) nodeStatuses(ctx context.Context) ([]NodeStatus, error) {
	nodes := c.Spec.Nodes()
	out := make([]NodeStatus, len(nodes))
	for i, n := range nodes {
		out[i] = NodeStatus{Addr: n.Addr(), Port: n.Port}
	}
	prov, err := c.provider(ctx)
	var states []provider.NodeState
	if err == nil {
		defer prov.Close()
		states, err = prov.Inspect(ctx)
	}
	if err != nil {
		for i := range out {
			out[i].Detail = err.Error()
		}
		return out, err
	}
	views := make([][]topology.Node, len(nodes))
	var wg sync.WaitGroup
	for i, ns := range states {
		out[i].Pid, out[i].Running, out[i].Detail = ns.Pid, ns.Running, ns.Detail
		out[i].Paused, out[i].Unproven, out[i].Partitioned = ns.Paused, ns.Unproven, ns.Partitioned
		if !ns.Responding {
			if out[i].Detail == "" && ns.Running {
				out[i].Detail = "not responding"
			}
			continue
		}
		wg.Go(func() {
			detail := out[i].Detail
			views[i] = c.fillStatus(ctx, &out[i])
			if out[i].Detail == "" {
				out[i].Detail = detail
			}
		})
	}
	wg.Wait()
	fillFromPeers(out, views)
	return out, nil
}

// fillFromPeers describes nodes that did not answer as their peers see them.
func fillFromPeers(out []NodeStatus, views [][]topology.Node) {
	byID := map[string]topology.Node{}
	for _, v := range views {
		for _, n := range v {
			byID[n.ID] = n
		}
	}
	for i := range out {
		if out[i].ID != "" {
			continue
		}
		for _, v := range views {
			for _, n := range v {
				if n.Addr != out[i].Addr || n.IsMyself() {
					continue
				}
				out[i].ID = n.ID
				out[i].Flags = peerFlags(n)
				out[i].Slots = topology.FormatRanges(n.Slots)
				switch {
				case n.IsMaster():
					out[i].Role = "master"
				case n.IsReplica():
					out[i].Role = "replica"
					if m, ok := byID[n.MasterID]; ok {
						out[i].Master = m.Addr
					}
				}
			}
			if out[i].ID != "" {
				break
			}
		}
	}
}

func peerFlags(n topology.Node) string {
	f := slices.Clone(n.Flags)
	if !n.Connected {
		f = append(f, "disconnected")
	}
	return strings.Join(f, ",")
}

// fillStatus asks one node about itself and returns its CLUSTER NODES view.
func (c *Cluster) fillStatus(ctx context.Context, ns *NodeStatus) []topology.Node {
	cl := c.Conn.Node(ns.Addr)
	defer cl.Close()
	pipe := cl.Pipeline()
	nodesCmd := pipe.ClusterNodes(ctx)
	infoCmd := pipe.ClusterInfo(ctx)
	replCmd := pipe.Info(ctx, "replication", "memory")
	sizeCmd := pipe.DBSize(ctx)
	_, _ = pipe.Exec(ctx)
	ns.answer = &health.Answer{Addr: ns.Addr}
	for _, cmd := range []redis.Cmder{nodesCmd, infoCmd, replCmd} {
		if err := cmd.Err(); err != nil && ns.answer.Err == nil {
			ns.answer.Err = err
		}
	}
	if err := ns.answer.Err; err != nil {
		ns.Detail = err.Error()
		return nil
	}
	all, err := topology.ParseNodes(nodesCmd.Val())
	if err != nil {
		ns.answer.Err = err
		ns.Detail = err.Error()
		return nil
	}
	ns.answer.Nodes = all
	ns.answer.Info = topology.ParseInfo(infoCmd.Val())
	ns.answer.Repl = topology.ParseInfo(replCmd.Val())
	byID := map[string]topology.Node{}
	for _, n := range all {
		byID[n.ID] = n
	}
	if me, ok := topology.Myself(all); ok {
		ns.ID = me.ID
		ns.Slots = topology.FormatRanges(me.Slots)
		ns.Flags = strings.Join(me.Flags, ",")
		switch {
		case me.IsMaster():
			ns.Role = "master"
		case me.IsReplica():
			ns.Role = "replica"
			if m, ok := byID[me.MasterID]; ok {
				ns.Master = m.Addr
			} else {
				ns.Master = me.MasterID
			}
		}
	}
	info := topology.ParseInfo(infoCmd.Val() + "\n" + replCmd.Val())
	ns.State = info["cluster_state"]
	ns.Link = info["master_link_status"]
	ns.Memory = info["used_memory_human"]
	ns.Keys = sizeCmd.Val()
	return all
}

// Problems says, one entry per node, what keeps the nodes from being a
// healthy cluster, by the one definition up's readiness and verify share
// (health.Judge over what each node answered), after what only the
// runtime knows: a node not running, paused, or not proven to be ours
// (whose peers seeing it fail or unlinked is then no news). None means
// healthy.
func Problems(sts []NodeStatus) []string {
	reasons := make(map[string][]string, len(sts))
	var answers []health.Answer
	down := map[string]bool{} // the runtime says so: peers seeing it fail add nothing
	for _, s := range sts {
		if s.Unproven || !s.Running || s.Paused || s.Partitioned {
			down[s.Addr] = true
		}
		switch {
		case s.Unproven:
			reasons[s.Addr] = []string{"not proven to be this cluster's node (" + s.Detail + ")"}
		case !s.Running:
			reasons[s.Addr] = []string{"not running"}
		case s.Paused:
			reasons[s.Addr] = []string{"paused (answers nothing)"}
		case s.Partitioned:
			reasons[s.Addr] = []string{"partitioned (cut off the cluster's network)"}
		case s.answer == nil || s.answer.Err != nil:
			why := "not answering"
			if s.Detail != "" {
				why += " (" + s.Detail + ")"
			}
			reasons[s.Addr] = []string{why}
		default:
			answers = append(answers, *s.answer)
		}
	}
	for _, f := range health.WithoutDown(health.Assess(answers, len(sts)), func(a string) bool { return down[a] }) {
		reasons[f.Addr] = append(reasons[f.Addr], f.Reason)
	}
	var out []string
	for _, s := range sts {
		if r := reasons[s.Addr]; len(r) > 0 {
			out = append(out, s.Addr+" "+strings.Join(r, "; "))
			delete(reasons, s.Addr)
		}
	}
	var others []string // judged about, but not spec nodes
	for addr, r := range reasons {
		others = append(others, addr+" "+strings.Join(r, "; "))
	}
	slices.Sort(others)
	return append(out, others...)
}

// WriteStatusTable prints statuses as an aligned table.
func WriteStatusTable(w io.Writer, sts []NodeStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPID\tROLE\tMASTER\tSLOTS\tSTATE\tLINK\tKEYS\tMEMORY\tFLAGS\tNOTE")
	for _, s := range sts {
		pid := "-"
		if s.Pid > 0 {
			pid = fmt.Sprint(s.Pid)
		}
		state := s.State
		switch {
		case s.Unproven:
			state = "unproven"
		case !s.Running:
			state = "stopped"
		case s.Paused:
			state = "paused"
		case s.Partitioned:
			state = "partitioned"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.Addr, pid, dash(s.Role), dash(s.Master),
			dash(s.Slots), dash(state), dash(s.Link), s.Keys, dash(s.Memory), dash(tableFlags(s.Flags)), s.Detail)
	}
	return tw.Flush()
}

// tableFlags drops what other columns already say (myself, master, slave).
func tableFlags(flags string) string {
	var keep []string
	for _, f := range strings.Split(flags, ",") {
		switch f {
		case "", "myself", "master", "slave", "noflags":
		default:
			keep = append(keep, f)
		}
	}
	return strings.Join(keep, ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
