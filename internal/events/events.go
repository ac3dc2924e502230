// Package events is the cluster's timeline: what the cluster did (a node
// suspected, failed, recovered; a role change, a failover, an epoch or slot
// owner change; a node unreachable or answering again) and what rcluster
// did to it (a failover, a node killed, a reset), each with the time it was
// seen. Users line their client's errors up against it.
//
// Events live in <state dir>/events.jsonl, one JSON object per line. Every
// rcluster process that changes the cluster appends to it (Log.Record) and
// so does the watcher of `rcluster events --follow` (Watch, which derives
// events from consecutive snapshots of every node's CLUSTER NODES: Diff).
package events

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Kinds of events. The first group is derived from what the nodes say
// (Diff); the second is recorded by the rcluster operations themselves.
const (
	// KindSuspected: a node flags a peer fail? (no answer within
	// cluster-node-timeout). One event per observer.
	KindSuspected = "suspected"
	// KindFailed: the cluster flags the node fail (a quorum of masters
	// agreed). One event per node.
	KindFailed = "failed"
	// KindRecovered: no node flags the node fail or fail? any more.
	KindRecovered = "recovered"
	// KindRole: a node became a master, a replica, or a replica of another
	// master.
	KindRole = "role"
	// KindFailover: a replica took over (some of) its master's slots.
	KindFailover = "failover"
	// KindEpoch: a master's config epoch changed other than by a failover.
	KindEpoch = "epoch"
	// KindSlots: slots changed owner other than by a failover.
	KindSlots = "slots"
	// KindUnreachable: a node stopped answering the watcher.
	KindUnreachable = "unreachable"
	// KindReachable: a node answers the watcher again.
	KindReachable = "reachable"
	// KindWatch: a watcher started or stopped; the log says nothing of
	// the cluster's own changes outside such a window.
	KindWatch = "watch"

	// KindOp: an rcluster operation's progress ("failover 127.0.0.1:7004
	// -> master: started", "... done in 0.21s").
	KindOp = "op"
	// KindNode: a node operation (kill, stop, start, pause, resume).
	KindNode = "node"
	// KindReset, KindUp, KindDown: `rcluster reset`, `up` and `down`.
	KindReset = "reset"
	KindUp    = "up"
	KindDown  = "down"
)

// Event is one line of the log. Message reads after Node: "failed
// 127.0.0.1:7002 marked failed; ...".
type Event struct {
	// Time is when the event was seen (RFC3339Nano in JSON). Record sets
	// a zero Time to the current time.
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	// Node is the address (host:port) of the node the event is about; ""
	// for events about the whole cluster.
	Node string `json:"node"`
	// NodeID is that node's cluster id, when known.
	NodeID  string `json:"node_id,omitempty"`
	Message string `json:"message"`
	// Peer is the other node involved: the observer of a suspicion.
	Peer string `json:"peer,omitempty"`
	// From and To are the before and after of a change: roles ("master",
	// "replica of 127.0.0.1:7001"), slot owners (addresses), epochs.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Epoch is the config epoch a failover or an epoch change ended with.
	Epoch uint64 `json:"epoch,omitempty"`
	// Slots are the slot ranges concerned ("0-5460,5462").
	Slots string `json:"slots,omitempty"`
}

// TimeLayout is how human lines print Time: UTC, milliseconds, so that
// lines from any machine sort and compare as text.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// String is the event as one human line:
// "2026-12-01T08:50:01.123Z  failed       127.0.0.1:7002   marked failed; ...".
func (e Event) String() string {
	node := e.Node
	if node == "" {
		node = "-"
	}
	return fmt.Sprintf("%s  %-11s  %-15s  %s", e.Time.UTC().Format(TimeLayout), e.Kind, node, e.Message)
}

// marshal is the event's log line, newline included.
func (e Event) marshal() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("event %s %s: %w", e.Kind, e.Node, err)
	}
	return append(b, '\n'), nil
}

func parseLine(line []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(line, &e); err != nil {
		return Event{}, err
	}
	if e.Time.IsZero() || strings.TrimSpace(e.Kind) == "" {
		return Event{}, fmt.Errorf("not an event (no time or kind)")
	}
	return e, nil
}
