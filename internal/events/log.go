package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/rcluster/rcluster/internal/poll"
)

// FileName is the log's name inside a state dir.
const FileName = "events.jsonl"

// Path is the log of the cluster whose state dir is dir.
func Path(dir string) string { return filepath.Join(dir, FileName) }

// Log appends events to a state dir's events.jsonl. Several processes may
// record at once: the file is opened O_APPEND and every Record is a single
// write of whole lines, so lines never interleave.
type Log struct {
	f *os.File
}

// Open opens (creating it 0600) the log in the state dir dir, which must
// exist: only the commands that make a state dir create one.
func Open(dir string) (*Log, error) {
	f, err := os.OpenFile(Path(dir), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("events log: %w", err)
	}
	return &Log{f: f}, nil
}

// Append records evs in the log of state dir dir: Open, Record, Close, for
// operations that record a few events.
func Append(dir string, evs ...Event) error {
	l, err := Open(dir)
	if err != nil {
		return err
	}
	err = l.Record(evs...)
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	return err
}

// Path is the log file's path.
func (l *Log) Path() string { return l.f.Name() }

// Record appends evs in one write. An event with a zero Time gets the
// current time. It is safe to call from several goroutines.
func (l *Log) Record(evs ...Event) error {
	var buf []byte
	now := time.Now()
	for _, e := range evs {
		if e.Time.IsZero() {
			e.Time = now
		}
		b, err := e.marshal()
		if err != nil {
			return err
		}
		buf = append(buf, b...)
	}
	if len(buf) == 0 {
		return nil
	}
	if _, err := l.f.Write(buf); err != nil {
		return fmt.Errorf("events log: %w", err)
	}
	return nil
}

// LockWatch makes this Log the cluster's one watcher: it takes a
// non-blocking exclusive flock on the log file, held until Close, and
// reports false when another process holds it. Two watchers would record
// every change twice. (Writers do not flock: Record never waits.)
func (l *Log) LockWatch() (bool, error) {
	err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("events log %s: lock: %w", l.Path(), err)
	}
	return true, nil
}

// Close closes the file (and releases LockWatch's lock).
func (l *Log) Close() error { return l.f.Close() }

// Read returns the events of the log at path recorded at or after since
// (zero: all), in time order. A missing file holds no events. A last line
// without its newline is being written (or was torn by a crash) and is
// left out; any other line that is not an event is an error naming it.
func Read(path string, since time.Time) ([]Event, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("events log: %w", err)
	}
	var r lineReader
	evs, err := r.parse(path, data, since)
	sortByTime(evs)
	return evs, err
}

// lineReader parses a log in chunks, keeping the partial last line and
// the line count between them.
type lineReader struct {
	partial []byte
	line    int
}

// parse returns the events of the complete lines in partial+data.
func (r *lineReader) parse(path string, data []byte, since time.Time) ([]Event, error) {
	r.partial = append(r.partial, data...)
	var evs []Event
	for {
		i := bytes.IndexByte(r.partial, '\n')
		if i < 0 {
			break
		}
		line := r.partial[:i]
		r.partial = r.partial[i+1:]
		r.line++
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		e, err := parseLine(line)
		if err != nil {
			return evs, fmt.Errorf("events log %s:%d: %w", path, r.line, err)
		}
		if !e.Time.Before(since) {
			evs = append(evs, e)
		}
	}
	r.partial = bytes.Clone(r.partial) // let the chunk go
	return evs, nil
}

func sortByTime(evs []Event) {
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
}

// maxChunk bounds what Follow reads from the file per round.
const maxChunk = 1 << 20

// Follow calls emit for every event of the log at path recorded at or
// after since: first those already there (in time order), then each new
// one as it is appended, until ctx ends, which is not an error. The file
// need not exist yet. A file truncated or replaced (a purge, then a new
// up) is read again from its start. It polls with backoff up to 200ms.
func Follow(ctx context.Context, path string, since time.Time, emit func(Event)) error {
	t := &tail{path: path}
	defer t.close()
	first := true
	b := poll.Backoff{Min: 10 * time.Millisecond, Max: 200 * time.Millisecond}
	for {
		evs, err := t.next(first)
		if err != nil {
			return err
		}
		if first {
			sortByTime(evs)
			first = false
		}
		for _, e := range evs {
			if !e.Time.Before(since) {
				emit(e)
			}
		}
		if len(evs) > 0 {
			b = poll.Backoff{Min: b.Min, Max: b.Max}
		}
		if err := b.Wait(ctx); err != nil {
			return nil
		}
	}
}

// tail reads what is appended to a file.
type tail struct {
	path string
	f    *os.File
	off  int64
	r    lineReader
	buf  []byte
}

func (t *tail) close() {
	if t.f != nil {
		t.f.Close()
	}
}

// next returns the events of the lines completed since the last call:
// with all, everything up to the end of the file, else at most maxChunk
// bytes' worth.
func (t *tail) next(all bool) ([]Event, error) {
	if err := t.reopenIfReplaced(); err != nil || t.f == nil {
		return nil, err
	}
	if t.buf == nil {
		t.buf = make([]byte, maxChunk)
	}
	var evs []Event
	for {
		n, err := t.f.ReadAt(t.buf, t.off)
		t.off += int64(n)
		got, perr := t.r.parse(t.path, t.buf[:n], time.Time{})
		evs = append(evs, got...)
		if perr != nil {
			return evs, perr
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return evs, fmt.Errorf("events log: %w", err)
		}
		if err != nil || !all {
			return evs, nil
		}
	}
}

// reopenIfReplaced opens the file when it appears and starts over when it
// was truncated or replaced by another file.
func (t *tail) reopenIfReplaced() error {
	fi, err := os.Stat(t.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // not yet, or deleted: wait for the next one
	}
	if err != nil {
		return fmt.Errorf("events log: %w", err)
	}
	if t.f != nil {
		cur, err := t.f.Stat()
		if err == nil && os.SameFile(cur, fi) && fi.Size() >= t.off {
			return nil
		}
		t.f.Close()
		t.f = nil
	}
	f, err := os.Open(t.path)
	if err != nil {
		return fmt.Errorf("events log: %w", err)
	}
	t.f, t.off, t.r = f, 0, lineReader{}
	return nil
}
