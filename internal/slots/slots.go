// Package slots plans and forms a Redis Cluster: redis-cli's slot split,
// deterministic replica placement with anti-affinity by host, and the
// commands that turn empty cluster-enabled nodes into one healthy cluster
// (ADDSLOTSRANGE, SET-CONFIG-EPOCH, MEET, REPLICATE), with a deadline.
package slots

import (
	"io"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/topology"
)

// Split divides the 16384 slots among n masters exactly as
// redis-cli --cluster create does.
//
// The result has one contiguous range per master covering 0..16383 in
// order; it is nil when masters is outside 1..16384. From 7542 masters on,
// for 2989 counts, the last ranges run past 16383 as redis-cli's do (see
// splitSlots): such a split cannot be assigned.
func Split(masters int) []topology.SlotRange { return splitSlots(masters) }

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
// Leftover nodes (len(nodes) not a multiple of replicas+1) become extra
// replicas, one per master in order. Same input, same plan: no randomness.
// Duplicate addresses are an error. Masters get config epochs 1..masters.
func NewPlan(nodes []spec.Node, replicas int) (*Plan, error) { return newPlan(nodes, replicas) }

// FormOptions tune Form.
type FormOptions struct {
	Conn redisconn.Options
	// Log receives one line per phase (may be nil).
	Log io.Writer

	forceLarge bool // for tests: the large-cluster path (largeMin) at any size
}

// Form and WaitReady are in form.go; readiness checks in ready.go.
