package slots

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/topology"
)

// BusOffset is the default cluster bus port offset (port + 10000): the bus
// port NodesConfs writes.
const BusOffset = 10000

// PrewriteVersionOK reports whether NodesConfs' file format is known to be
// what a redis-server of this version loads: the 7.0 line format, checked
// on 7.0.15. Newer versions change the file (7.2 adds shard ids), so they
// get Form's MEET path.
func PrewriteVersionOK(major, minor int) bool { return major == 7 && minor == 0 }

// NodesConf is the pre-written cluster config of one planned node.
type NodesConf struct {
	Node spec.Node
	ID   string // the node id the file gives it
	Data []byte
}

// NodesConfs renders, for every node of the plan (in Plan.Nodes order), the
// nodes.conf Redis 7.0 would hold once Form had finished: fresh random node
// ids, each master with its slot range and config epoch 1..M, each replica
// following its master (and showing its master's epoch, as Redis does),
// every node "connected", currentEpoch M. Nodes started on these files know
// each other at once, so the cluster is usable as soon as Redis lets a new
// master serve (~2s after start) without MEET, gossip or settle.
//
// Hostnames are resolved (the file needs IPs); bus ports are port+BusOffset.
// Only for empty nodes that have never run (no data, no nodes.conf) and
// a version PrewriteVersionOK accepts; the caller must fall back to Form
// when the nodes do not come up as written.
func NodesConfs(ctx context.Context, p *Plan) ([]NodesConf, error) {
	if p == nil || len(p.Shards) == 0 {
		return nil, fmt.Errorf("nodes.conf: empty plan")
	}
	type entry struct {
		node   spec.Node
		id, ip string
		master string // master id, "" for masters
		epoch  uint64
		slots  topology.SlotRange
	}
	var es []*entry
	masterID := make([]string, len(p.Shards))
	for i, s := range p.Shards {
		id, err := newNodeID()
		if err != nil {
			return nil, err
		}
		masterID[i] = id
		es = append(es, &entry{node: s.Master, id: id, epoch: s.Epoch, slots: s.Slots})
	}
	for i, s := range p.Shards {
		for _, r := range s.Replicas {
			id, err := newNodeID()
			if err != nil {
				return nil, err
			}
			es = append(es, &entry{node: r, id: id, master: masterID[i], epoch: s.Epoch})
		}
	}
	for _, e := range es {
		ip, err := resolveIP(ctx, e.node.Host)
		if err != nil {
			return nil, fmt.Errorf("nodes.conf: node %s: resolve %s: %w", e.node.Addr(), e.node.Host, err)
		}
		e.ip = ip
	}
	// Every file lists the same lines; only the "myself," flag moves.
	lines := make([]string, len(es))
	for i, e := range es {
		role, master, slots := "master", "-", " "+topology.FormatRanges([]topology.SlotRange{e.slots})
		if e.master != "" {
			role, master, slots = "slave", e.master, ""
		}
		lines[i] = fmt.Sprintf("%s %s:%d@%d %%s%s %s 0 0 %d connected%s\n",
			e.id, e.ip, e.node.Port, e.node.Port+BusOffset, role, master, e.epoch, slots)
	}
	vars := "vars currentEpoch " + strconv.Itoa(len(p.Shards)) + " lastVoteEpoch 0\n"
	out := make([]NodesConf, len(es))
	for i, e := range es {
		var b strings.Builder
		for j, l := range lines {
			me := ""
			if j == i {
				me = "myself,"
			}
			fmt.Fprintf(&b, l, me)
		}
		b.WriteString(vars)
		out[i] = NodesConf{Node: e.node, ID: e.id, Data: []byte(b.String())}
	}
	return out, nil
}

// newNodeID returns 40 random hex digits, like Redis's own node ids.
func newNodeID() (string, error) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("node id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
