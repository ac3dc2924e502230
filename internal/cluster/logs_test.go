package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/spec"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
}

func testSpec(t *testing.T, ports ...int) *spec.Spec {
	return &spec.Spec{Name: "t", Host: "127.0.0.1", Ports: ports, Dir: t.TempDir(), RedisServer: "redis-server"}
}

// logLine is a redis log line at second sec.
func logLine(pid, sec int, msg string) string {
	return fmt.Sprintf("%d:M 05 Mar 2024 10:00:%02d.000 * %s\n", pid, sec, msg)
}

func TestLogsMergesByTimeWithPrefixes(t *testing.T) {
	s := testSpec(t, 7001, 7002, 17003)
	writeFile(t, s.LogFile(7001), logLine(1, 1, "a1")+logLine(1, 4, "a4")+"  no timestamp, stays after a4\n"+logLine(1, 6, "a6"))
	writeFile(t, s.LogFile(7002), logLine(2, 2, "b2")+logLine(2, 5, "b5"))
	writeFile(t, s.LogFile(17003), logLine(3, 3, "c3"))
	c := &Cluster{Spec: s}
	var out bytes.Buffer
	if err := c.Logs(context.Background(), &out, LogOptions{Tail: -1}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		pre, rest, _ := strings.Cut(l, "| ")
		f := strings.Fields(rest)
		got = append(got, pre+"|"+f[len(f)-1])
	}
	// The untimed line (last word "a4") stays right after its predecessor.
	want := []string{"7001  |a1", "7002  |b2", "17003 |c3", "7001  |a4", "7001  |a4", "7002  |b5", "7001  |a6"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("merged order:\n%s\nwant %v", out.String(), want)
	}
}

func TestLogsTailAndPortSelection(t *testing.T) {
	s := testSpec(t, 7001, 7002)
	var b strings.Builder
	for i := range 50 {
		b.WriteString(logLine(1, i, fmt.Sprintf("line%d", i)))
	}
	writeFile(t, s.LogFile(7001), b.String())
	writeFile(t, s.LogFile(7002), logLine(2, 1, "other"))
	c := &Cluster{Spec: s}
	var out bytes.Buffer
	if err := c.Logs(context.Background(), &out, LogOptions{Ports: []int{7001}, Tail: 3}); err != nil {
		t.Fatal(err)
	}
	want := "7001 | " + strings.TrimSuffix(logLine(1, 47, "line47"), "\n") + "\n" +
		"7001 | " + strings.TrimSuffix(logLine(1, 48, "line48"), "\n") + "\n" +
		"7001 | " + logLine(1, 49, "line49")
	if out.String() != want {
		t.Fatalf("tail 3 of 7001:\n%s\nwant:\n%s", out.String(), want)
	}
	out.Reset()
	if err := c.Logs(context.Background(), &out, LogOptions{Tail: 0}); err != nil || out.Len() != 0 {
		t.Fatalf("tail 0: %q, %v", out.String(), err)
	}
	var pe *PortError
	if err := c.Logs(context.Background(), &out, LogOptions{Ports: []int{7009}}); !errors.As(err, &pe) || !strings.Contains(err.Error(), "7001, 7002") {
		t.Fatalf("unknown port: %v", err)
	}
}

func TestLogsNoFiles(t *testing.T) {
	c := &Cluster{Spec: testSpec(t, 7001)}
	err := c.Logs(context.Background(), &bytes.Buffer{}, LogOptions{Tail: 10})
	if err == nil || !strings.Contains(err.Error(), "rcluster up") {
		t.Fatalf("err = %v, want a hint to run up", err)
	}
}

func TestTailOffsetLongFile(t *testing.T) {
	// More than one backwards block, lines without a final newline.
	p := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&b, "line %05d %s\n", i, strings.Repeat("x", 40))
	}
	data := strings.TrimSuffix(b.String(), "\n")
	writeFile(t, p, data)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, n := range []int{1, 2, 1000, 4999, 5000, 9999} {
		off, err := tailOffset(f, int64(len(data)), n)
		if err != nil {
			t.Fatal(err)
		}
		first := max(5000-n, 0)
		if !strings.HasPrefix(data[off:], fmt.Sprintf("line %05d ", first)) {
			t.Errorf("tail %d starts at %q", n, data[off:min(int(off)+20, len(data))])
		}
	}
}

// syncBuf is a bytes.Buffer safe for one writer and a polling reader.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitOutput(t *testing.T, b *syncBuf, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for d := time.Millisecond; !strings.Contains(b.String(), want); d = min(2*d, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("output never showed %q:\n%s", want, b.String())
		}
		time.Sleep(d)
	}
}

func TestLogsFollow(t *testing.T) {
	s := testSpec(t, 7001, 7002)
	writeFile(t, s.LogFile(7001), logLine(1, 1, "old")+"1:M 05 Mar 2024 10:00:02.000 * half")
	c := &Cluster{Spec: s}
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuf
	done := make(chan error, 1)
	go func() { done <- c.Logs(ctx, &out, LogOptions{Tail: 10, Follow: true, Poll: 5 * time.Millisecond}) }()

	waitOutput(t, &out, "old")
	if strings.Contains(out.String(), "half") {
		t.Fatalf("an unterminated line was printed before it was complete:\n%s", out.String())
	}
	appendFile(t, s.LogFile(7001), " line\n")
	waitOutput(t, &out, "7001 | 1:M 05 Mar 2024 10:00:02.000 * half line\n")

	// A node whose log appears only now (started later).
	writeFile(t, s.LogFile(7002), logLine(2, 3, "late node"))
	waitOutput(t, &out, "7002 | "+logLine(2, 3, "late node"))

	// Rotation: the file is replaced by a shorter one.
	if err := os.Rename(s.LogFile(7001), s.LogFile(7001)+".1"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, s.LogFile(7001), logLine(1, 4, "rotated"))
	waitOutput(t, &out, "7001 | "+logLine(1, 4, "rotated"))
	// Truncation in place.
	writeFile(t, s.LogFile(7001), logLine(1, 5, "t"))
	waitOutput(t, &out, "7001 | "+logLine(1, 5, "t"))

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("follow ended with %v, want nil on cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not stop after cancel")
	}
	if n := strings.Count(out.String(), "old"); n != 1 {
		t.Errorf("the old line was printed %d times:\n%s", n, out.String())
	}
}

func TestLogsCutsHugeLines(t *testing.T) {
	s := testSpec(t, 7001)
	writeFile(t, s.LogFile(7001), strings.Repeat("y", 3*maxLineLen)+"\n"+logLine(1, 1, "after"))
	var out bytes.Buffer
	if err := (&Cluster{Spec: s}).Logs(context.Background(), &out, LogOptions{Tail: -1}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 2 || len(lines[0]) != len("7001 | ")+maxLineLen || !strings.HasSuffix(lines[1], "after") {
		t.Fatalf("got %d lines, first %d bytes", len(lines), len(lines[0]))
	}
}

// External nodes' logs are not rcluster's: logs says so instead of
// looking for files it never had.
func TestLogsExternalSaysWhy(t *testing.T) {
	s, err := spec.NewExternal("ext", t.TempDir(), []spec.Node{{Host: "127.0.0.1", Port: 7001}, {Host: "127.0.0.1", Port: 7002}, {Host: "127.0.0.1", Port: 7003}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = (&Cluster{Spec: s}).Logs(context.Background(), io.Discard, LogOptions{})
	if err == nil || !strings.Contains(err.Error(), "runtime external: rcluster keeps no logs") {
		t.Fatalf("Logs of an external cluster = %v", err)
	}
}
