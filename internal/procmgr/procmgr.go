// Package procmgr runs redis-server nodes as local processes: parallel start
// where Start means "spawned and answering PING", identity proof before any
// signal (the pid from the pidfile must be that redis-server on that port),
// and graceful stop (SHUTDOWN, so the AOF is flushed) that collects every error.
package procmgr

import (
	"context"
	"time"

	"github.com/rcluster/rcluster/internal/redisconn"
)

// Node describes one redis-server process managed through its files.
type Node struct {
	Host     string
	Port     int
	Binary   string // redis-server path or name
	ConfFile string // rendered redis.conf (daemonize yes, pidfile set)
	PidFile  string
	LogFile  string
}

// Addr is host:port.
func (n Node) Addr() string { panic("unimplemented") }

// State of a node's process.
type State struct {
	Pid     int  // 0 when no pidfile / no live process
	Running bool // a live process proven to be this node
	// Responding is true when the node answered PING.
	Responding bool
	// Detail explains a not-running state: "no pidfile", "stale pidfile: pid 123 is not redis-server on port 7001", ...
	Detail string
}

// Options for Start/Stop.
type Options struct {
	Conn redisconn.Options
	// Ready bounds how long one node may take to answer PING after spawn (default 10s).
	Ready time.Duration
}

// Start launches every node in parallel and returns when all answer PING.
// On the first failure it stops the nodes this call started and returns an
// error naming the port and quoting the node's log tail / stderr.
func Start(ctx context.Context, nodes []Node, o Options) error { panic("unimplemented") }

// Inspect reports the state of each node (in order) without changing anything.
func Inspect(ctx context.Context, nodes []Node, o Options) []State { panic("unimplemented") }

// StopResult is what Stop did to one node.
type StopResult struct {
	Node    Node
	Pid     int
	Action  string // "shutdown", "sigterm", "sigkill", "not running"
	Err     error
}

// Stop stops every node in parallel: SHUTDOWN through the client port,
// then SIGTERM and SIGKILL only for a process proven to be that node, and
// waits until the process is gone and the port is free. Nodes already dead
// are reported with Action "not running" and no error. The returned error
// joins every failure.
func Stop(ctx context.Context, nodes []Node, o Options) ([]StopResult, error) { panic("unimplemented") }
