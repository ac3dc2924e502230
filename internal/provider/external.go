package provider

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/rcluster/rcluster/internal/slots"
	"github.com/rcluster/rcluster/internal/spec"
)

// External is runtime: external: nodes rcluster did not start. It never
// starts, stops or reconfigures them; it only talks to them.
type External struct {
	spec *spec.Spec
	o    Options
}

// NewExternal is the provider of nodes someone else runs (also `rcluster
// create`, which has no spec file).
func NewExternal(s *spec.Spec, o Options) *External { return &External{spec: s, o: o} }

// Name implements Provider.
func (e *External) Name() string { return spec.RuntimeExternal }

// StartStep implements Provider.
func (e *External) StartStep(n int) string {
	return fmt.Sprintf("Reaching %d %s", n, plural(n, "node", "nodes"))
}

// UndoStep implements Provider (Undo does nothing).
func (e *External) UndoStep(int) string { return "Leaving the external nodes as they are" }

// Describe implements Provider.
func (e *External) Describe() string {
	return "(runtime external: " + strings.Join(e.spec.Addrs(), " ") + ")."
}

// Close implements Provider.
func (e *External) Close() error { return nil }

// Preflight implements Provider: nothing to check before reaching them.
func (e *External) Preflight(context.Context, []spec.Node) (string, error) { return "", nil }

// Prepare implements Provider: external nodes bring their own configs.
func (e *External) Prepare(context.Context) error { return nil }

// Inspect implements Provider: a node runs when it answers PING.
func (e *External) Inspect(ctx context.Context) ([]NodeState, error) {
	nodes := e.spec.Nodes()
	out := make([]NodeState, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			out[i] = NodeState{Node: n}
			cl := e.o.Conn.Node(n.Addr())
			defer cl.Close()
			if err := cl.Ping(ctx).Err(); err != nil {
				out[i].Detail = "external node not reachable: " + err.Error()
				return
			}
			out[i].Running, out[i].Responding, out[i].Detail = true, true, "external"
		})
	}
	wg.Wait()
	return out, nil
}

// Serving implements Provider: whoever answers at an external node's
// address is that node.
func (e *External) Serving(context.Context, []slots.Server) bool { return true }

// Start implements Provider: it cannot start anything, so it reports every
// node of the spec that does not answer.
func (e *External) Start(ctx context.Context, _ []spec.Node) error {
	states, _ := e.Inspect(ctx)
	var lines []string
	for _, st := range states {
		if !st.Responding {
			lines = append(lines, fmt.Sprintf("node %s: %s", st.Node.Addr(), strings.TrimPrefix(st.Detail, "external node ")))
		}
	}
	if len(lines) == 0 {
		return nil
	}
	return fmt.Errorf("runtime external: rcluster does not start nodes, and %d did not answer:\n  %s",
		len(lines), strings.Join(lines, "\n  "))
}

// Undo implements Provider: nothing was started.
func (e *External) Undo(context.Context, []spec.Node) error { return nil }

// StopAll implements Provider: external nodes are left running.
func (e *External) StopAll(context.Context, []spec.Node) ([]StopResult, error) { return nil, nil }

// Summary implements Provider.
func (e *External) Summary([]StopResult) string {
	return fmt.Sprintf("runtime external: rcluster did not start its %d nodes and leaves them running", len(e.spec.Nodes()))
}

// NodesFile implements Provider: an external node's files are not ours.
func (e *External) NodesFile(spec.Node) string { return "" }

func (e *External) refuse(op string, n spec.Node) error {
	return fmt.Errorf("node %s: %s: %w", n.Addr(), op, ErrNotOurs)
}

// Kill implements Provider: refused.
func (e *External) Kill(_ context.Context, n spec.Node) error { return e.refuse("kill", n) }

// StopNode implements Provider: refused.
func (e *External) StopNode(_ context.Context, n spec.Node) error { return e.refuse("stop", n) }

// StartNode implements Provider: refused.
func (e *External) StartNode(_ context.Context, n spec.Node) error { return e.refuse("start", n) }

// Pause implements Provider: refused.
func (e *External) Pause(_ context.Context, n spec.Node) error { return e.refuse("pause", n) }

// Resume implements Provider: refused.
func (e *External) Resume(_ context.Context, n spec.Node) error { return e.refuse("resume", n) }

// Partition implements Provider: refused.
func (e *External) Partition(_ context.Context, n spec.Node) error { return e.refuse("partition", n) }

// Heal implements Provider: refused.
func (e *External) Heal(_ context.Context, n spec.Node) error { return e.refuse("heal", n) }
