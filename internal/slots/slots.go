// Package slots plans and forms a Redis Cluster: redis-cli's slot split,
// deterministic replica placement with anti-affinity by host, and the
// commands that turn empty cluster-enabled nodes into one healthy cluster
// (ADDSLOTSRANGE, SET-CONFIG-EPOCH, MEET, REPLICATE), with a deadline.
package slots

import (
	"context"
	"io"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/topology"
)

// Split divides the 16384 slots among n masters exactly as
// redis-cli --cluster create does.
func Split(masters int) []topology.SlotRange { panic("unimplemented") }

// Shard is one master with its slots, config epoch and replicas.
type Shard struct {
	Master   spec.Node
	Slots    topology.SlotRange
	Epoch    uint64
	Replicas []spec.Node
}

// Plan is the intended topology.
type Plan struct {
	Shards []Shard
}

// NewPlan: masters are the first len(nodes)/(replicas+1) nodes in order;
// the rest are replicas, assigned deterministically, never on the same host
// as their master when another host is possible. Error if fewer than 3 masters.
func NewPlan(nodes []spec.Node, replicas int) (*Plan, error) { panic("unimplemented") }

// FormOptions tune Form.
type FormOptions struct {
	Conn redisconn.Options
	// Log receives one line per phase (may be nil).
	Log io.Writer
}

// Form turns the plan's empty nodes into a cluster and returns when every
// node reports cluster_state:ok, all agree, and every replica's link is up,
// or when ctx ends (the error then names the nodes that had not converged).
// Nodes that are not empty (keys, known nodes, slots) are refused by name
// before anything is changed.
func Form(ctx context.Context, p *Plan, o FormOptions) error { panic("unimplemented") }

// WaitReady polls every addr until the cluster is usable: cluster_state:ok
// on every node, each knows expectNodes nodes and agrees on the slot map, no
// fail flags, every replica link up. On ctx end it returns an error naming
// the nodes that are not ready and why.
func WaitReady(ctx context.Context, addrs []string, expectNodes int, o redisconn.Options) error {
	panic("unimplemented")
}
