package rclustertest

import (
	"context"
	"time"

	"github.com/rcluster/rcluster/internal/events"
)

// Event is one entry of the cluster's event log: what an operation did
// (kind "op", "node", "failover", "reset", ...) or what the watcher saw a
// node do ("suspected", "failed", "recovered", "role", "slots", ...).
type Event struct {
	Time    time.Time
	Kind    string
	Node    string
	Message string
}

// Events returns the cluster's event log so far, oldest first: every
// operation this package ran on it, and what Watch saw.
func (c *Cluster) Events() []Event {
	c.t.Helper()
	evs, err := events.Read(events.Path(c.spec.Dir), time.Time{})
	if err != nil {
		c.t.Fatalf("rclustertest: events: %v", err)
	}
	out := make([]Event, len(evs))
	for i, e := range evs {
		out[i] = Event{Time: e.Time, Kind: e.Kind, Node: e.Node, Message: e.Message}
	}
	return out
}

// Watch records what the nodes do (suspected, failed, recovered, role and
// slot owner changes, ...) into the event log until the test ends, so that
// Events lines the cluster's changes up with the test's own errors.
func (c *Cluster) Watch() {
	c.t.Helper()
	log, err := events.Open(c.spec.Dir)
	if err != nil {
		c.t.Fatalf("rclustertest: events: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = events.Watch(ctx, c.Addrs(), c.conn, events.DefaultInterval, func(e events.Event) { _ = log.Record(e) })
	}()
	c.t.Cleanup(func() {
		cancel()
		<-done
		log.Close()
	})
}
