package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/rcluster/rcluster/internal/dockerrt"
	"github.com/rcluster/rcluster/internal/slots"
	"github.com/rcluster/rcluster/internal/spec"
)

// Docker runs each node as a container of the spec's image (runtime:
// docker; internal/dockerrt), its config, data and log in the state dir.
type Docker struct {
	spec *spec.Spec
	rt   *dockerrt.Runtime
}

func openDocker(ctx context.Context, s *spec.Spec, o Options) (*Docker, error) {
	rt, err := dockerrt.New(ctx, s, dockerrt.Options{Conn: o.Conn, Log: o.log()})
	if err != nil {
		return nil, err
	}
	return &Docker{spec: s, rt: rt}, nil
}

// Name implements Provider.
func (d *Docker) Name() string { return spec.RuntimeDocker }

// StartStep implements Provider.
func (d *Docker) StartStep(n int) string { return fmt.Sprintf("Starting %d containers", n) }

// UndoStep implements Provider.
func (d *Docker) UndoStep(n int) string {
	return fmt.Sprintf("Removing the %d containers this run started", n)
}

// Describe implements Provider.
func (d *Docker) Describe() string {
	s := d.spec
	if s.IsBridge() {
		nodes := s.Nodes()
		return fmt.Sprintf("(containers of %s on network %s, %s: %s to %s; stop them with `rcluster down`).",
			s.Image, dockerrt.NetworkName(s), s.BridgeSubnet(), nodes[0].Addr(), nodes[len(nodes)-1].Addr())
	}
	return fmt.Sprintf("(containers of %s on %s:%d-%d; stop them with `rcluster down`).", s.Image, s.Host, slices.Min(s.Ports), slices.Max(s.Ports))
}

// Close implements Provider.
func (d *Docker) Close() error { return d.rt.Close() }

// Preflight implements Provider: the engine answered when the provider
// was opened; the image and ports are checked when containers start.
func (d *Docker) Preflight(context.Context, []spec.Node) (string, error) {
	return "image " + d.spec.Image, nil
}

// Prepare implements Provider: the image (built or imported locally, or
// pulled) and every node's container config.
func (d *Docker) Prepare(ctx context.Context) error {
	if err := d.rt.EnsureImage(ctx); err != nil {
		return err
	}
	if err := d.rt.WriteConfigs(); err != nil {
		return fmt.Errorf("write configs: %w", err)
	}
	return nil
}

// Inspect implements Provider: the containers carrying this state dir's
// label, in spec order.
func (d *Docker) Inspect(ctx context.Context) ([]NodeState, error) {
	sts, err := d.rt.Inspect(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]NodeState, len(sts))
	for i, s := range sts {
		detail := s.Detail
		if detail == "" {
			detail = "container " + s.Container
		}
		out[i] = NodeState{Node: s.Node, Running: s.Running, Responding: s.Responding, Paused: s.Paused,
			Partitioned: s.Partitioned, Pid: s.Pid, Detail: detail}
	}
	return out, nil
}

// Serving implements Provider: a container's redis-server reports its pid
// inside the container, so the proof is the engine's: every node's
// container of this state dir runs.
func (d *Docker) Serving(ctx context.Context, _ []slots.Server) bool {
	sts, err := d.rt.Inspect(ctx)
	if err != nil {
		return false
	}
	for _, s := range sts {
		if !s.Running {
			return false
		}
	}
	return true
}

// Start implements Provider.
func (d *Docker) Start(ctx context.Context, nodes []spec.Node) error { return d.rt.Start(ctx, nodes) }

// Undo implements Provider: remove the containers Start created.
func (d *Docker) Undo(ctx context.Context, nodes []spec.Node) error { return d.rt.Remove(ctx, nodes) }

// StopAll implements Provider: SHUTDOWN then remove every container of the
// state dir (nodes the spec no longer lists included: they carry its
// label); the data stays in the state dir.
func (d *Docker) StopAll(ctx context.Context, _ []spec.Node) ([]StopResult, error) {
	res, err := d.rt.Stop(ctx)
	out := make([]StopResult, len(res))
	for i, r := range res {
		out[i] = StopResult{Addr: r.Addr, Action: r.Action, Unit: r.Container, Detail: r.Detail, Err: r.Err}
	}
	return out, err
}

// Summary implements Provider: "3 containers stopped and removed".
func (d *Docker) Summary(res []StopResult) string {
	stopped := 0
	for _, r := range res {
		if r.Err == nil {
			stopped++
		}
	}
	return fmt.Sprintf("%d containers stopped and removed", stopped)
}

// NodesFile implements Provider: the data dir is mounted from the state dir.
func (d *Docker) NodesFile(n spec.Node) string { return d.spec.NodesFile(n.Port) }

// Kill implements Provider (docker kill; the container stays).
func (d *Docker) Kill(ctx context.Context, n spec.Node) error { return d.rt.Kill(ctx, n) }

// StopNode implements Provider: SHUTDOWN, the container stays.
func (d *Docker) StopNode(ctx context.Context, n spec.Node) error {
	_, err := d.rt.StopNode(ctx, n)
	return err
}

// StartNode implements Provider: the node's container again, with its data.
func (d *Docker) StartNode(ctx context.Context, n spec.Node) error { return d.rt.StartNode(ctx, n) }

// Pause implements Provider (docker pause).
func (d *Docker) Pause(ctx context.Context, n spec.Node) error { return d.rt.Pause(ctx, n) }

// Resume implements Provider (docker unpause, then PING).
func (d *Docker) Resume(ctx context.Context, n spec.Node) error { return d.rt.Unpause(ctx, n) }

// Partition implements Provider: with network: bridge the node's container
// is disconnected from the cluster's network (dockerrt.Partition); with
// host networking it cannot be (dockerrt.ErrPartitionUnsupported, wrapped
// in ErrNoPartition).
func (d *Docker) Partition(ctx context.Context, n spec.Node) error {
	return noPartition(d.rt.Partition(ctx, n))
}

// Heal implements Provider: the container is connected again with its IP
// (see Partition).
func (d *Docker) Heal(ctx context.Context, n spec.Node) error { return noPartition(d.rt.Heal(ctx, n)) }

func noPartition(err error) error {
	if errors.Is(err, dockerrt.ErrPartitionUnsupported) {
		return fmt.Errorf("%w: %w", ErrNoPartition, err)
	}
	return err
}
