package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/slots"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
	"github.com/rcluster/rcluster/internal/ui"
)

// externalCluster is a runtime: external spec on the given nodes, listed by
// hostname (localhost) so up has to resolve them.
func externalCluster(t *testing.T, nodes []*redistest.Node, replicas int) (*Cluster, *bytes.Buffer) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "name: ext\nruntime: external\nreplicas: %d\ndir: state\nnodes:\n", replicas)
	for _, n := range nodes {
		fmt.Fprintf(&b, "  - localhost:%d\n", n.Port)
	}
	s, err := spec.Parse([]byte(b.String()), filepath.Join(t.TempDir(), "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	return &Cluster{Spec: s, Conn: redisconn.Options{}, Status: ui.NewStatus(&log), Log: &log}, &log
}

func TestExternalUpStatusDown(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 6)
	c, log := externalCluster(t, nodes, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	start := time.Now()
	if err := c.Up(ctx, UpOptions{Timeout: 30 * time.Second}); err != nil {
		t.Fatalf("up: %v\n%s", err, log)
	}
	t.Logf("up on 6 external nodes: %v", time.Since(start).Round(time.Millisecond))
	if got := c.Spec.Addrs()[0]; got != nodes[0].Addr {
		t.Errorf("localhost resolved to %s, want %s", got, nodes[0].Addr)
	}
	if err := slots.WaitReady(ctx, redistest.Addrs(nodes), 6, c.Conn); err != nil {
		t.Fatal(err)
	}
	roles := map[string]int{}
	for _, ns := range c.NodeStatuses(ctx) {
		if !ns.Running || ns.Pid != 0 || ns.Detail != "external" {
			t.Errorf("status %+v", ns)
		}
		roles[ns.Role]++
	}
	if roles["master"] != 3 || roles["replica"] != 3 {
		t.Errorf("roles %v", roles)
	}

	log.Reset()
	if err := c.Up(ctx, UpOptions{}); err != nil || !strings.Contains(log.String(), "already up") {
		t.Errorf("second up: %v\n%s", err, log)
	}

	// A spec that no longer matches the formed cluster is refused.
	changed, _ := externalCluster(t, nodes, 0)
	changed.Spec.Dir = c.Spec.Dir
	var ce *ConflictError
	if err := changed.Up(ctx, UpOptions{}); !errors.As(err, &ce) || !strings.Contains(err.Error(), "replicas was 1, now 0") {
		t.Errorf("up with replicas changed: %v", err)
	}

	log.Reset()
	if err := c.Down(ctx, DownOptions{Purge: true}); err != nil {
		t.Fatalf("down --purge: %v", err)
	}
	if !strings.Contains(log.String(), "leaves them running") {
		t.Errorf("down output:\n%s", log)
	}
	// Nothing was stopped or reset.
	if err := slots.WaitReady(ctx, redistest.Addrs(nodes), 6, c.Conn); err != nil {
		t.Errorf("cluster after down: %v", err)
	}
}

func TestExternalUpUnreachable(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3)
	c, log := externalCluster(t, nodes, 0)
	nodes[2].Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c.Up(ctx, UpOptions{Timeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "node "+nodes[2].Addr+": not reachable") ||
		!strings.Contains(err.Error(), "rcluster does not start nodes") {
		t.Fatalf("up with a dead node: %v\n%s", err, log)
	}
	// Nothing was formed on the live ones.
	for _, n := range nodes[:2] {
		cl := c.Conn.Node(n.Addr)
		info, err := cl.ClusterInfo(ctx).Result()
		cl.Close()
		if err != nil || !strings.Contains(info, "cluster_known_nodes:1\r\n") {
			t.Errorf("node %s after a failed up: %v %q", n.Addr, err, info)
		}
	}
}

func TestCreate(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var sn []spec.Node
	for _, n := range nodes {
		sn = append(sn, spec.Node{Host: "localhost", Port: n.Port})
	}
	var log bytes.Buffer
	o := CreateOptions{Status: ui.NewStatus(&log), Log: &log}
	if err := Create(ctx, sn, 0, o); err != nil {
		t.Fatalf("create: %v\n%s", err, &log)
	}
	if err := slots.WaitReady(ctx, redistest.Addrs(nodes), 3, redisconn.Options{}); err != nil {
		t.Fatal(err)
	}
	log.Reset()
	if err := Create(ctx, sn, 0, o); err != nil || !strings.Contains(log.String(), "already up") {
		t.Errorf("create again: %v\n%s", err, &log)
	}
}
