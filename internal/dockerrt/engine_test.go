package dockerrt

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/rcluster/rcluster/internal/spec"
)

// hungEngine is a Docker engine socket that accepts connections and never
// answers (a frozen daemon); it returns its DOCKER_HOST.
func hungEngine(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "e.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "unix://" + sock
}

// TestHungEngineBoundsEveryCall: against an engine that never answers,
// every operation returns within its CallTimeout, not the caller's far
// longer deadline, with an error naming the node or container, the request
// and the bound.
func TestHungEngineBoundsEveryCall(t *testing.T) {
	host := hungEngine(t)
	const bound = 200 * time.Millisecond
	const slow = 3 * time.Second // far below the caller's deadline, far above the bound
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	s := &spec.Spec{Name: "dev", Host: "127.0.0.1", Ports: spec.Ports{7001}, Dir: t.TempDir(), Image: "rcluster-redis:local", Runtime: spec.RuntimeDocker}
	cli, err := client.New(client.WithHost(host))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	r := &Runtime{Spec: s, o: Options{CallTimeout: bound, Grace: bound, Ready: bound}.withDefaults(), cli: cli}
	n := s.Nodes()[0]
	name := ContainerName(s, n.Port)
	inspectNode := "container " + name + ": inspect: "

	cases := []struct {
		op   string
		call func() error
		want string // what precedes the deadline in the error
	}{
		{"New", func() error {
			t.Setenv("DOCKER_HOST", host)
			_, err := New(ctx, s, Options{CallTimeout: bound})
			return err
		}, "runtime docker: cannot reach the Docker engine at " + host + " (is Docker running, and may this user use it?): ping: "},
		{"Inspect", func() error { _, err := r.Inspect(ctx); return err }, "list containers of " + s.Dir + ": "},
		{"Stop", func() error { _, err := r.Stop(ctx); return err }, "list containers of " + s.Dir + ": "},
		{"Remove", func() error { return r.Remove(ctx, s.Nodes()) }, "list containers of " + s.Dir + ": "},
		{"EnsureImage", func() error { return r.EnsureImage(ctx) }, "image rcluster-redis:local: inspect: "},
		{"Kill", func() error { return r.Kill(ctx, n) }, "node 127.0.0.1:7001: kill: " + inspectNode},
		{"StopNode", func() error { _, err := r.StopNode(ctx, n); return err }, "stop node 127.0.0.1:7001: " + inspectNode},
		{"StartNode", func() error { return r.StartNode(ctx, n) }, "start node 127.0.0.1:7001: " + inspectNode},
		{"Pause", func() error { return r.Pause(ctx, n) }, "node 127.0.0.1:7001: pause: " + inspectNode},
		{"Unpause", func() error { return r.Unpause(ctx, n) }, "node 127.0.0.1:7001: unpause: " + inspectNode},
	}
	for _, c := range cases {
		start := time.Now()
		err := c.call()
		took := time.Since(start)
		want := c.want + "context deadline exceeded (Docker engine did not answer within 200ms)"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s on a hung engine: %v\nwant an error containing %q", c.op, err, want)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s on a hung engine: %v does not match context.DeadlineExceeded", c.op, err)
		}
		if took > slow {
			t.Errorf("%s on a hung engine took %v, want about %v", c.op, took, bound)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the caller's deadline ended the calls, not CallTimeout")
	}
}

// TestEngineBlamesOnlyItsOwnDeadline: when the caller's context ends the
// request, the error says so and does not blame the engine.
func TestEngineBlamesOnlyItsOwnDeadline(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := engine(ctx, time.Hour, "container c: inspect", func(ctx context.Context) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
	if err == nil || err.Error() != "container c: inspect: context canceled" {
		t.Errorf("cancelled by the caller: %v", err)
	}
	_, err = engine(context.Background(), time.Hour, "container c: inspect", func(context.Context) (int, error) {
		return 0, errors.New("boom")
	})
	if err == nil || err.Error() != "container c: inspect: boom" {
		t.Errorf("engine error: %v", err)
	}
}

func TestPartitionIsRefusedWithHostNetworking(t *testing.T) {
	r := &Runtime{Spec: &spec.Spec{Name: "dev", Dir: t.TempDir()}}
	n := spec.Node{Host: "127.0.0.1", Port: 7001}
	for op, f := range map[string]func(context.Context, spec.Node) error{"partition": r.Partition, "heal": r.Heal} {
		err := f(context.Background(), n)
		if !errors.Is(err, ErrPartitionUnsupported) || !strings.HasPrefix(err.Error(), "node 127.0.0.1:7001: "+op+": ") {
			t.Errorf("%s: %v, want ErrPartitionUnsupported naming the node", op, err)
		}
	}
}
