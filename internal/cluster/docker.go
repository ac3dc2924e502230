package cluster

import (
	"context"
	"fmt"

	"github.com/rcluster/rcluster/internal/dockerrt"
	"github.com/rcluster/rcluster/internal/spec"
)

// dockerRuntime runs the nodes as containers (runtime: docker).
type dockerRuntime struct {
	c  *Cluster
	rt *dockerrt.Runtime
}

func (c *Cluster) openDocker(ctx context.Context) (nodeRuntime, error) {
	rt, err := dockerrt.New(ctx, c.Spec, dockerrt.Options{Conn: c.Conn, Log: c.log()})
	if err != nil {
		return nil, err
	}
	return &dockerRuntime{c: c, rt: rt}, nil
}

func (d *dockerRuntime) what() string { return "containers" }

func (d *dockerRuntime) startStep(n int) string { return fmt.Sprintf("Starting %d containers", n) }

func (d *dockerRuntime) close() { _ = d.rt.Close() }

func (d *dockerRuntime) inspect(ctx context.Context) ([]nodeState, error) {
	sts, err := d.rt.Inspect(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]nodeState, len(sts))
	for i, s := range sts {
		detail := s.Detail
		if detail == "" {
			detail = "container " + s.Container
		}
		out[i] = nodeState{node: s.Node, running: s.Running, responding: s.Responding, pid: s.Pid, detail: detail}
	}
	return out, nil
}

func (d *dockerRuntime) start(ctx context.Context, nodes []spec.Node) error {
	if err := d.rt.EnsureImage(ctx); err != nil {
		return err
	}
	if err := d.rt.WriteConfigs(); err != nil {
		return fmt.Errorf("write configs: %w", err)
	}
	return d.rt.Start(ctx, nodes)
}

func (d *dockerRuntime) undo(ctx context.Context, nodes []spec.Node) error {
	return d.rt.Remove(ctx, nodes)
}

func (d *dockerRuntime) stopAll(ctx context.Context) ([]string, int, error) {
	res, err := d.rt.Stop(ctx)
	lines := make([]string, 0, len(res))
	stopped := 0
	for _, r := range res {
		line := fmt.Sprintf("  %s: %s (container %s)", r.Addr, r.Action, r.Container)
		if r.Detail != "" {
			line += ": " + r.Detail
		}
		if r.Err != nil {
			line += ": " + r.Err.Error()
		} else {
			stopped++
		}
		lines = append(lines, line)
	}
	return lines, stopped, err
}
