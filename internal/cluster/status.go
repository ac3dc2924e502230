package cluster

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/rcluster/rcluster/internal/procmgr"
	"github.com/rcluster/rcluster/internal/topology"
)

// NodeStatus is one node as status shows it.
type NodeStatus struct {
	Addr    string `json:"addr"`
	Port    int    `json:"port"`
	Pid     int    `json:"pid"`
	Running bool   `json:"running"`
	ID      string `json:"id,omitempty"`
	Role    string `json:"role,omitempty"`
	Master  string `json:"master,omitempty"`
	Slots   string `json:"slots,omitempty"`
	State   string `json:"cluster_state,omitempty"`
	Link    string `json:"link,omitempty"` // replica: master_link_status
	Keys    int64  `json:"keys"`
	Memory  string `json:"memory,omitempty"`
	Flags   string `json:"flags,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// NodeStatuses gathers every node's process and cluster state in parallel.
// A node that does not answer gets its role, flags and link state from
// what the answering nodes say of it (e.g. "master,fail", "disconnected").
func (c *Cluster) NodeStatuses(ctx context.Context) []NodeStatus {
	if c.foreign() {
		return c.foreignStatuses(ctx) // docker and external: foreign.go
	}
	nodes := c.procNodes()
	states := procmgr.Inspect(ctx, nodes, c.procOpts())
	out := make([]NodeStatus, len(nodes))
	views := make([][]topology.Node, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		out[i] = NodeStatus{Addr: n.Addr(), Port: n.Port, Pid: states[i].Pid, Running: states[i].Running, Detail: states[i].Detail}
		if !states[i].Responding {
			if out[i].Detail == "" && states[i].Running {
				out[i].Detail = "not responding"
			}
			continue
		}
		wg.Go(func() { views[i] = c.fillStatus(ctx, &out[i]) })
	}
	wg.Wait()
	fillFromPeers(out, views)
	return out
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
	if err := nodesCmd.Err(); err != nil {
		ns.Detail = err.Error()
		return nil
	}
	all, err := topology.ParseNodes(nodesCmd.Val())
	if err != nil {
		ns.Detail = err.Error()
		return nil
	}
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
// healthy cluster: not running, not answering, a cluster_state other than
// ok, a replica whose link to its master is not up. None means healthy.
func Problems(sts []NodeStatus) []string {
	var out []string
	for _, s := range sts {
		var why string
		switch {
		case !s.Running:
			why = "not running"
		case s.State == "":
			why = "not answering"
			if s.Detail != "" {
				why += " (" + s.Detail + ")"
			}
		case s.State != "ok":
			why = "cluster_state:" + s.State
		case s.Role == "replica" && s.Link != "up":
			why = "master_link_status:" + dash(s.Link)
		}
		if why != "" {
			out = append(out, s.Addr+" "+why)
		}
	}
	return out
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
		if !s.Running {
			state = "stopped"
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
