package cluster

import (
	"context"
	"io"
	"time"

	"github.com/rcluster/rcluster/internal/provider"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/ui"
)

// CreateOptions tune Create.
type CreateOptions struct {
	Conn redisconn.Options
	// Timeout bounds the whole of create (default 60s).
	Timeout time.Duration
	Status  *ui.Status
	Log     io.Writer
	// Resolver resolves hostnames (nil: the system's).
	Resolver spec.Resolver
}

// Create forms a cluster on running nodes rcluster did not start (`rcluster
// create HOST:PORT...`), with replicas per master: hostnames are resolved
// (MEET needs IPs), every node must answer, then fresh nodes are formed by
// the deterministic plan (anti-affinity by host), or an existing cluster of
// exactly these nodes is waited for and left as it is. Nothing is saved:
// no state dir is used.
func Create(ctx context.Context, nodes []spec.Node, replicas int, o CreateOptions) error {
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	s, err := spec.NewExternal("external", "-", nodes, replicas)
	if err != nil {
		return err
	}
	if err := s.ResolveHosts(ctx, o.Resolver); err != nil {
		return err
	}
	c := &Cluster{Spec: s, Conn: o.Conn, Status: o.Status, Log: o.Log}
	_, err = c.bringUp(ctx, provider.NewExternal(s, provider.Options{Conn: o.Conn, Log: o.Log}), UpOptions{Timeout: o.Timeout}, c.status().Start)
	return err
}
