package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rcluster/rcluster/internal/events"
	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

// syncBuffer is a bytes.Buffer safe to read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Bytes() []byte { return []byte(s.String()) }

// runEvents runs `rcluster events args...` as Run would once the command
// is registered (usage errors exit 2).
func runEvents(ctx context.Context, stdout, stderr *syncBuffer, args ...string) int {
	fileFlag := &cli.StringFlag{Name: "file", Aliases: []string{"f"}}
	cmd := eventsCommand(fileFlag, stdout, stderr)
	cmd.OnUsageError = func(_ *cli.Context, err error, _ bool) error { return &UsageError{err} }
	app := &cli.App{Name: "rcluster", Writer: stdout, ErrWriter: stderr, Commands: []*cli.Command{cmd},
		ExitErrHandler: func(*cli.Context, error) {}}
	err := app.RunContext(ctx, append([]string{"rcluster", "events"}, args...))
	return ExitCode(err, stderr)
}

// eventsSpec writes a spec for ports on 127.0.0.1 with its state dir
// (created when mkdir) and returns the spec's path and the dir.
func eventsSpec(t *testing.T, mkdir bool, ports ...int) (string, string) {
	t.Helper()
	root := t.TempDir()
	var ps []string
	for _, p := range ports {
		ps = append(ps, fmt.Sprint(p))
	}
	file := filepath.Join(root, "cluster.yaml")
	if err := os.WriteFile(file, []byte("name: ev\nports: ["+strings.Join(ps, ", ")+"]\ndir: ./state\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "state")
	if mkdir {
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return file, dir
}

func TestEventsPrintsRecorded(t *testing.T) {
	file, dir := eventsSpec(t, true, 7001, 7002, 7003)
	now := time.Now()
	if err := events.Append(dir,
		events.Event{Time: now.Add(-time.Minute), Kind: events.KindFailed, Node: "127.0.0.1:7002", Message: "marked failed"},
		events.Event{Time: now.Add(-2 * time.Hour), Kind: events.KindOp, Node: "127.0.0.1:7004", Message: "failover 127.0.0.1:7004 -> master: started"},
	); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	out, errb := &syncBuffer{}, &syncBuffer{}
	if code := runEvents(ctx, out, errb, "-f", file); code != 0 {
		t.Fatalf("events: exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "op ") || !strings.Contains(lines[1], "failed       127.0.0.1:7002   marked failed") {
		t.Errorf("events printed (want the op, then the failure):\n%s", out.String())
	}

	out, errb = &syncBuffer{}, &syncBuffer{}
	if code := runEvents(ctx, out, errb, "-f", file, "--json", "--since", "1h"); code != 0 {
		t.Fatalf("events --json --since 1h: exit %d: %s", code, errb.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("--json output %q: %v", out.String(), err)
	}
	if m["kind"] != "failed" || m["node"] != "127.0.0.1:7002" || m["message"] != "marked failed" {
		t.Errorf("--json --since 1h printed %v, want only the failure", m)
	}
	if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["time"])); err != nil {
		t.Errorf("time %v: %v", m["time"], err)
	}

	for _, args := range [][]string{{"extra"}, {"--since", "10"}, {"--since", "yesterday"}, {"--interval", "0s"}} {
		out, errb = &syncBuffer{}, &syncBuffer{}
		if code := runEvents(ctx, out, errb, append([]string{"-f", file}, args...)...); code != 2 {
			t.Errorf("events %v: exit %d, want 2 (stderr %q)", args, code, errb.String())
		}
	}

	// A cluster with no log yet: nothing, and a note saying why.
	file, _ = eventsSpec(t, false, 7001, 7002, 7003)
	out, errb = &syncBuffer{}, &syncBuffer{}
	if code := runEvents(ctx, out, errb, "-f", file); code != 0 || out.String() != "" || !strings.Contains(errb.String(), "no events recorded") {
		t.Errorf("events without a log: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}

// --follow on real nodes: it prints what another command records and what
// its watcher sees, records the latter, ends cleanly at interrupt, and a
// second follower does not record the same changes again.
func TestEventsFollow(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3)
	file, dir := eventsSpec(t, true, nodes[0].Port, nodes[1].Port, nodes[2].Port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	follow := func() (stop func() int, out, errb *syncBuffer) {
		out, errb = &syncBuffer{}, &syncBuffer{}
		fctx, fcancel := context.WithCancel(ctx)
		done := make(chan int, 1)
		go func() { done <- runEvents(fctx, out, errb, "-f", file, "--follow", "--interval", "50ms") }()
		return func() int { fcancel(); return <-done }, out, errb
	}
	waitFor := func(b *syncBuffer, want string) {
		t.Helper()
		bo := poll.Backoff{Max: 50 * time.Millisecond}
		for !strings.Contains(b.String(), want) {
			if err := bo.Wait(ctx); err != nil {
				t.Fatalf("output never showed %q:\n%s", want, b.String())
			}
		}
	}

	stop1, out1, errb1 := follow()
	waitFor(out1, "watching 3 nodes")
	stop2, out2, errb2 := follow()
	waitFor(errb2, "another `rcluster events --follow` watches this cluster")

	if err := events.Append(dir, events.Event{Kind: events.KindNode, Node: nodes[1].Addr, Message: "kill " + nodes[1].Addr}); err != nil {
		t.Fatal(err)
	}
	waitFor(out1, "kill "+nodes[1].Addr)
	nodes[1].Kill()
	want := fmt.Sprintf("unreachable  %-15s  not answering", nodes[1].Addr)
	waitFor(out1, want)
	waitFor(out2, want)
	if code := stop1(); code != 0 {
		t.Errorf("follow ended with exit %d at interrupt: %s", code, errb1.String())
	}
	if code := stop2(); code != 0 {
		t.Errorf("second follow ended with exit %d: %s", code, errb2.String())
	}

	evs, err := events.Read(events.Path(dir), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	unreachable := 0
	for _, e := range evs {
		if e.Kind == events.KindUnreachable && e.Node == nodes[1].Addr {
			unreachable++
		}
	}
	if unreachable != 1 {
		t.Errorf("the log holds %d unreachable events for %s, want 1 (one watcher records):\n%v", unreachable, nodes[1].Addr, evs)
	}
}
