package dockerrt

import (
	"context"
	"errors"
	"fmt"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/rcluster/rcluster/internal/spec"
)

// Single-node operations, for changing a running cluster (failover tests,
// fault injection). Each acts only on the node's container when it carries
// this spec's labels (see nodeContainer), returns once its effect is
// visible, is bounded by ctx (and every engine request by CallTimeout), and
// names the node in its errors.

// ErrPartitionUnsupported is why Partition and Heal fail with host
// networking (network: host, the default; see the package doc): the
// containers share the host's network stack and there is no Docker
// network to disconnect them from. Cutting a node off would take firewall
// rules on the host, which rcluster never touches.
var ErrPartitionUnsupported = errors.New("runtime docker runs these nodes with host networking, so a node cannot be cut off the network (that would take firewall rules on the host, which rcluster does not touch); set network: bridge in the spec to partition nodes, or pause one to simulate a hung node")

// Kill sends SIGKILL to node n's container (docker kill) and returns once
// the container no longer runs: a crash, with no chance to flush anything.
// The container stays (StartNode starts it again with its data). A node
// whose container is not running, or that has none, is left as it is.
func (r *Runtime) Kill(ctx context.Context, n spec.Node) error {
	fail := func(err error) error { return fmt.Errorf("node %s: kill: %w", n.Addr(), err) }
	c, found, err := r.nodeContainer(ctx, n)
	if err != nil {
		return fail(err)
	}
	if !found || !c.State.Running {
		return nil
	}
	name := ContainerName(r.Spec, n.Port)
	_, err = engine(ctx, r.o.CallTimeout, "container "+name+": kill", func(ctx context.Context) (client.ContainerKillResult, error) {
		return r.cli.ContainerKill(ctx, c.ID, client.ContainerKillOptions{Signal: "SIGKILL"})
	})
	if err != nil {
		// It may have exited on its own in between.
		if now, ierr := r.inspect(ctx, c.ID, name); ierr != nil || now.State == nil || now.State.Running {
			return fail(err)
		}
	}
	// The engine answers once the signal is sent; the exit follows within
	// moments. Grace bounds the wait when ctx has no deadline.
	wctx, cancel := context.WithTimeout(ctx, r.o.Grace)
	defer cancel()
	if err := r.waitStopped(wctx, c.ID, name); err != nil {
		return fail(fmt.Errorf("container %s still running after SIGKILL: %w", name, err))
	}
	return nil
}

// StopNode stops node n gracefully, as Stop does (SHUTDOWN, so the AOF is
// flushed; the engine's stop if the node refuses or outlives Grace), but
// keeps its container, so StartNode starts it again with its data. It
// returns once the container no longer runs. A node whose container is not
// running, or that has none, is left as it is (Action "not running").
func (r *Runtime) StopNode(ctx context.Context, n spec.Node) (StopResult, error) {
	name := ContainerName(r.Spec, n.Port)
	res := StopResult{Addr: n.Addr(), Container: name, Action: "not running"}
	c, found, err := r.nodeContainer(ctx, n)
	if err != nil {
		res.Err = fmt.Errorf("stop node %s: %w", n.Addr(), err)
		return res, res.Err
	}
	switch {
	case !found:
		res.Detail = "no container"
	case !c.State.Running:
		res.Detail = describeStopped(name, c.State)
	default:
		res = r.halt(ctx, c.ID, name, n, c.State.Paused, r.cutOff(c))
	}
	return res, res.Err
}

// StartNode starts node n's existing container again (a stopped or killed
// node keeps its container, and its data in the state dir), or creates one
// as Start does when there is none, and returns once the node answers PING.
// A running node is only waited for; a paused one is an error (Unpause
// resumes it), and so is one cut off the network (Heal reconnects it).
// Before a container starts, its ports must be free on the host.
func (r *Runtime) StartNode(ctx context.Context, n spec.Node) error {
	c, found, err := r.nodeContainer(ctx, n)
	if err != nil {
		return fmt.Errorf("start node %s: %w", n.Addr(), err)
	}
	if !found {
		return r.Start(ctx, []spec.Node{n})
	}
	name := ContainerName(r.Spec, n.Port)
	switch {
	case c.State.Paused:
		return fmt.Errorf("start node %s: container %s is paused (unpause resumes it)", n.Addr(), name)
	case r.cutOff(c):
		return fmt.Errorf("start node %s: container %s is cut off network %s (partitioned; heal reconnects it)", n.Addr(), name, NetworkName(r.Spec))
	case c.State.Running:
		if err := r.waitReady(ctx, c.ID, n); err != nil {
			return fmt.Errorf("start node %s (container %s, running): %w%s", n.Addr(), name, err, r.logs(ctx, c.ID, n))
		}
		return nil
	}
	if err := r.checkFree(n); err != nil {
		return fmt.Errorf("start %w", err)
	}
	if err := r.run(ctx, c.ID, n); err != nil {
		return fmt.Errorf("start node %s: %w", n.Addr(), err)
	}
	return nil
}

// Pause freezes node n's container (docker pause: the cgroup freezer). Its
// ports still accept TCP connections but nothing answers: a hung node. The
// engine answers once the freeze is complete. A paused node is left as it
// is; one that is not running is an error.
func (r *Runtime) Pause(ctx context.Context, n spec.Node) error {
	fail := func(err error) error { return fmt.Errorf("node %s: pause: %w", n.Addr(), err) }
	c, err := r.runningContainer(ctx, n)
	if err != nil {
		return fail(err)
	}
	if c.State.Paused {
		return nil
	}
	name := ContainerName(r.Spec, n.Port)
	if _, err := engine(ctx, r.o.CallTimeout, "container "+name+": pause", func(ctx context.Context) (client.ContainerPauseResult, error) {
		return r.cli.ContainerPause(ctx, c.ID, client.ContainerPauseOptions{})
	}); err != nil {
		return fail(err)
	}
	return nil
}

// Unpause thaws node n's paused container (docker unpause) and returns once
// the node answers PING again. A running node that is not paused is only
// waited for; one that is not running is an error.
func (r *Runtime) Unpause(ctx context.Context, n spec.Node) error {
	fail := func(err error) error { return fmt.Errorf("node %s: unpause: %w", n.Addr(), err) }
	c, err := r.runningContainer(ctx, n)
	if err != nil {
		return fail(err)
	}
	name := ContainerName(r.Spec, n.Port)
	if c.State.Paused {
		if _, err := engine(ctx, r.o.CallTimeout, "container "+name+": unpause", func(ctx context.Context) (client.ContainerUnpauseResult, error) {
			return r.cli.ContainerUnpause(ctx, c.ID, client.ContainerUnpauseOptions{})
		}); err != nil {
			return fail(err)
		}
	}
	if err := r.waitReady(ctx, c.ID, n); err != nil {
		return fail(fmt.Errorf("container %s: %w", name, err))
	}
	return nil
}

// runningContainer is node n's container, which must run (paused or not).
func (r *Runtime) runningContainer(ctx context.Context, n spec.Node) (container.InspectResponse, error) {
	c, found, err := r.nodeContainer(ctx, n)
	name := ContainerName(r.Spec, n.Port)
	switch {
	case err != nil:
		return c, err
	case !found:
		return c, fmt.Errorf("no container %s", name)
	case !c.State.Running:
		return c, errors.New(describeStopped(name, c.State))
	}
	return c, nil
}
