// Package cluster runs rcluster's lifecycle on any runtime: up (lock,
// saved-state checks, preflight, prepare, start, form or wait), down,
// status, ls and logs, as ordered steps sharing one context, with tear-down
// of what a failed run started. How nodes run is a provider's business
// (internal/provider); nothing here asks which runtime a spec uses.
package cluster

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/rcluster/rcluster/internal/confgen"
	"github.com/rcluster/rcluster/internal/provider"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/ui"
)

// Cluster is one spec plus how to talk to its nodes and where to report.
type Cluster struct {
	Spec   *spec.Spec
	Conn   redisconn.Options
	Status *ui.Status
	// Log receives detail lines (may be io.Discard).
	Log io.Writer
	// LockWait bounds how long to wait for another up/down on the same spec.
	LockWait time.Duration
}

// PreflightError lists every reason up could not start nodes; nothing was
// started.
type PreflightError = provider.PreflightError

func (c *Cluster) status() *ui.Status {
	if c.Status == nil {
		return ui.Quiet()
	}
	return c.Status
}

func (c *Cluster) log() io.Writer {
	if c.Log == nil {
		return io.Discard
	}
	return c.Log
}

func (c *Cluster) lockWait() time.Duration {
	if c.LockWait <= 0 {
		return 30 * time.Second
	}
	return c.LockWait
}

// provider opens the provider of the spec's runtime.
func (c *Cluster) provider(ctx context.Context) (provider.Provider, error) {
	return provider.For(ctx, c.Spec, provider.Options{Conn: c.Conn, Log: c.log()})
}

// ensureTLS makes the spec's generated TLS material exist and re-reads the
// client settings, so that every later call (the provider's included)
// speaks TLS with it. Without TLS it does nothing.
func (c *Cluster) ensureTLS() error {
	if c.Spec.TLS == nil {
		return nil
	}
	if err := confgen.EnsureTLS(c.Spec); err != nil {
		return err
	}
	return c.refreshConn()
}

// refreshConn re-reads the spec's client settings once configs (and any
// generated TLS certificates) exist, keeping the caller's timeouts.
func (c *Cluster) refreshConn() error {
	o, err := c.Spec.ConnOptions()
	if err != nil {
		return fmt.Errorf("client settings: %w", err)
	}
	o.Timeout, o.NoRetry = c.Conn.Timeout, c.Conn.NoRetry
	if c.Conn.Username != "" || c.Conn.Password != "" {
		o.Username, o.Password = c.Conn.Username, c.Conn.Password
	}
	c.Conn = o
	return nil
}

func itThem(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}
