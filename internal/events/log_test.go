package events

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRecordAndRead(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if fi, err := os.Stat(Path(dir)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("log file: %v, mode %v; want 0600", err, fi.Mode())
	}
	before := time.Now()
	late := Event{Time: t0.Add(time.Minute), Kind: KindFailed, Node: "127.0.0.1:7002", Message: "marked failed"}
	early := Event{Time: t0, Kind: KindOp, Node: "127.0.0.1:7004", Message: "failover 127.0.0.1:7004 -> master: started"}
	if err := l.Record(late, early); err != nil {
		t.Fatal(err)
	}
	if err := l.Record(Event{Kind: KindDown, Message: "down"}); err != nil {
		t.Fatal(err)
	}
	evs, err := Read(Path(dir), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || evs[0].Message != early.Message || evs[1].Message != late.Message || evs[2].Kind != KindDown {
		t.Fatalf("Read = %v, want the op, the failure, then down (time order)", evs)
	}
	if evs[2].Time.Before(before) {
		t.Errorf("Record left a zero time as %v, want now", evs[2].Time)
	}
	if evs, err := Read(Path(dir), t0.Add(time.Second)); err != nil || len(evs) != 2 || evs[0].Kind != KindFailed {
		t.Errorf("Read since t0+1s = %v, %v; want the failure and down", evs, err)
	}
	// The JSON has the required fields, time in RFC3339Nano.
	b, _ := os.ReadFile(Path(dir))
	var m map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(string(b), "\n", 2)[0]), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "kind", "node", "message"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON line %s lacks %q", b, k)
		}
	}
	if m["time"] != t0.Add(time.Minute).Format(time.RFC3339Nano) {
		t.Errorf("time = %v, want RFC3339Nano %s", m["time"], t0.Add(time.Minute).Format(time.RFC3339Nano))
	}
	if evs, err := Read(Path(t.TempDir()), time.Time{}); err != nil || len(evs) != 0 {
		t.Errorf("Read of a missing log = %v, %v; want nothing, no error", evs, err)
	}
	if _, err := Open(dir + "/missing"); err == nil {
		t.Error("Open in a missing state dir created it")
	}
}

func TestReadTornAndBadLines(t *testing.T) {
	dir := t.TempDir()
	good := `{"time":"2026-12-01T08:50:00Z","kind":"failed","node":"127.0.0.1:7002","message":"x"}`
	if err := os.WriteFile(Path(dir), []byte(good+"\n"+good[:30]), 0o600); err != nil {
		t.Fatal(err)
	}
	if evs, err := Read(Path(dir), time.Time{}); err != nil || len(evs) != 1 {
		t.Errorf("torn last line: Read = %v, %v; want the one whole event", evs, err)
	}
	if err := os.WriteFile(Path(dir), []byte(good+"\n"+good[:30]+"\n"+good+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(Path(dir), time.Time{}); err == nil || !strings.Contains(err.Error(), FileName+":2") {
		t.Errorf("bad middle line: err = %v, want one naming %s:2", err, FileName)
	}
}

// Writers with their own file descriptors (as separate processes) append
// whole lines: none is lost or interleaved.
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	const writers, each = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			l, err := Open(dir)
			if err != nil {
				errs <- err
				return
			}
			defer l.Close()
			for i := range each {
				msg := fmt.Sprintf("writer %d event %d %s", w, i, strings.Repeat("x", 300))
				if err := l.Record(Event{Kind: KindOp, Node: "127.0.0.1:7001", Message: msg}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	evs, err := Read(Path(dir), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range evs {
		seen[e.Message] = true
	}
	if len(evs) != writers*each || len(seen) != writers*each {
		t.Errorf("read %d events (%d distinct), want %d", len(evs), len(seen), writers*each)
	}
}

func TestLockWatch(t *testing.T) {
	dir := t.TempDir()
	a, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if ok, err := a.LockWatch(); !ok || err != nil {
		t.Fatalf("first watcher: %v, %v", ok, err)
	}
	if ok, err := b.LockWatch(); ok || err != nil {
		t.Fatalf("second watcher got the lock: %v, %v", ok, err)
	}
	if err := b.Record(Event{Kind: KindOp, Message: "a writer never waits for the watcher"}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if ok, err := b.LockWatch(); !ok || err != nil {
		t.Fatalf("after the first closed: %v, %v", ok, err)
	}
}

func TestFollow(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan Event, 16)
	done := make(chan error, 1)
	fctx, stop := context.WithCancel(ctx)
	go func() { done <- Follow(fctx, Path(dir), t0, func(e Event) { got <- e }) }()
	next := func(want string) {
		t.Helper()
		select {
		case e := <-got:
			if e.Message != want {
				t.Fatalf("followed %q, want %q", e.Message, want)
			}
		case <-ctx.Done():
			t.Fatalf("no event %q within the deadline", want)
		}
	}
	// The file does not exist yet.
	if err := Append(dir, Event{Time: t0.Add(-time.Hour), Kind: KindOp, Message: "before since"},
		Event{Time: t0.Add(time.Second), Kind: KindOp, Message: "one"}); err != nil {
		t.Fatal(err)
	}
	next("one")
	// A line written in two parts is emitted once whole.
	line, _ := Event{Time: t0.Add(2 * time.Second), Kind: KindOp, Message: "two"}.marshal()
	f, err := os.OpenFile(Path(dir), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(line[:10])
	f.Sync()
	f.Write(line[10:])
	f.Close()
	next("two")
	// Replaced by a new, shorter log (a purge then a new up): read from
	// its start.
	os.Remove(Path(dir))
	if err := Append(dir, Event{Time: t0.Add(3 * time.Second), Kind: KindUp, Message: "three"}); err != nil {
		t.Fatal(err)
	}
	next("three")
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Follow ended with %v, want nil at cancel", err)
		}
	case <-ctx.Done():
		t.Fatal("Follow did not end at cancel")
	}
	select {
	case e := <-got:
		t.Errorf("unexpected event %v", e)
	default:
	}
}

func TestEventString(t *testing.T) {
	e := Event{Time: time.Date(2026, 12, 1, 9, 50, 1, 123456789, time.FixedZone("CET", 3600)), Kind: KindFailed, Node: "127.0.0.1:7002", Message: "marked failed"}
	want := "2026-12-01T08:50:01.123Z  failed       127.0.0.1:7002   marked failed"
	if got := e.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
