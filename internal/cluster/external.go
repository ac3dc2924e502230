package cluster

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/ui"
)

// externalRuntime is runtime: external: nodes rcluster did not start. It
// never starts, stops or reconfigures them; it only talks to them.
type externalRuntime struct {
	spec *spec.Spec
	conn redisconn.Options
}

func (e *externalRuntime) what() string { return "nodes" }

func (e *externalRuntime) startStep(n int) string {
	return fmt.Sprintf("Reaching %d %s", n, pluralNode(n))
}

func pluralNode(n int) string {
	if n == 1 {
		return "node"
	}
	return "nodes"
}

func (e *externalRuntime) close() {}

func (e *externalRuntime) inspect(ctx context.Context) ([]nodeState, error) {
	nodes := e.spec.Nodes()
	out := make([]nodeState, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			out[i] = nodeState{node: n}
			cl := e.conn.Node(n.Addr())
			defer cl.Close()
			if err := cl.Ping(ctx).Err(); err != nil {
				out[i].detail = "external node not reachable: " + err.Error()
				return
			}
			out[i].running, out[i].responding, out[i].detail = true, true, "external"
		})
	}
	wg.Wait()
	return out, nil
}

// start cannot start anything: it reports the nodes that did not answer.
func (e *externalRuntime) start(ctx context.Context, nodes []spec.Node) error {
	states, _ := e.inspect(ctx)
	var lines []string
	for _, st := range states {
		for _, n := range nodes {
			if st.node == n && !st.responding {
				lines = append(lines, fmt.Sprintf("node %s: %s", n.Addr(), strings.TrimPrefix(st.detail, "external node ")))
			}
		}
	}
	return fmt.Errorf("runtime external: rcluster does not start nodes, and %d did not answer:\n  %s",
		len(lines), strings.Join(lines, "\n  "))
}

func (e *externalRuntime) undo(context.Context, []spec.Node) error { return nil }

func (e *externalRuntime) stopAll(context.Context) ([]string, int, error) { return nil, 0, nil }

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
	return c.bringUp(ctx, &externalRuntime{spec: s, conn: o.Conn}, UpOptions{Timeout: o.Timeout})
}
