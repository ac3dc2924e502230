package cluster

import (
	"fmt"

	"github.com/rcluster/rcluster/internal/events"
	"github.com/rcluster/rcluster/internal/statedir"
)

// record appends evs to the cluster's event log (`rcluster events`), when
// the cluster has a state dir. Failing to record is said on the log
// writer and never fails the operation the events describe.
func (c *Cluster) record(evs ...events.Event) {
	if !statedir.Exists(statedir.Path(c.Spec.Dir)) {
		return
	}
	if err := events.Append(c.Spec.Dir, evs...); err != nil {
		fmt.Fprintf(c.log(), "events: %v\n", err)
	}
}

// outcome is the event closing an operation: "done ..." or "failed: err".
func outcome(kind, node, what string, err error, done string) events.Event {
	ev := events.Event{Kind: kind, Node: node, Message: what + ": " + done}
	if err != nil {
		ev.Message = what + " failed: " + err.Error()
	}
	return ev
}
