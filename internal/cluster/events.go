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
	dir := c.Spec.Dir
	if !statedir.Exists(statedir.Path(dir)) {
		return
	}
	if !statedir.Exists(events.Path(dir)) {
		// About to create it: record that rcluster did, for purge (state
		// dirs made before the log existed do not list it yet).
		if st, err := statedir.Read(dir); err == nil && st != nil && statedir.Claim(dir, st, statedir.Layout{Paths: []string{statedir.EventsFile}}) {
			if err := statedir.Write(dir, st); err != nil {
				fmt.Fprintf(c.log(), "events: %v\n", err)
			}
		}
	}
	if err := events.Append(dir, evs...); err != nil {
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
