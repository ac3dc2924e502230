package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rcluster/rcluster/internal/provider"
	"github.com/rcluster/rcluster/internal/spec"
)

// LogOptions tune Logs.
type LogOptions struct {
	// Ports selects nodes (nil: every node of the spec).
	Ports []int
	// Tail is how many lines per node to show from the end of its log
	// before following; negative means the whole log.
	Tail int
	// Follow keeps printing new lines until ctx ends.
	Follow bool
	// Color colours each node's prefix (for terminals).
	Color bool
	// Poll is the follow interval (default 200ms).
	Poll time.Duration
}

// Bounds that keep logs cheap whatever the files hold.
const (
	maxLineLen   = 16 << 10 // longer lines are cut
	maxReadChunk = 1 << 20  // bytes read from one file per follow round
)

// Logs prints the nodes' redis logs to w, each line prefixed with the
// node's port like docker compose ("7001 | ..."). Lines of several nodes are
// merged in timestamp order. With o.Follow it then prints new lines as the
// files grow (re-reading a file that was truncated or replaced) until ctx
// ends, which is not an error.
func (c *Cluster) Logs(ctx context.Context, w io.Writer, o LogOptions) error {
	ports := o.Ports
	if len(ports) == 0 {
		for _, n := range c.Spec.Nodes() {
			ports = append(ports, n.Port)
		}
	}
	for _, p := range o.Ports {
		if !slices.Contains(c.Spec.Ports, p) {
			return &PortError{Port: p, Ports: c.Spec.Ports}
		}
	}
	width := 0
	for _, p := range ports {
		width = max(width, len(strconv.Itoa(p)))
	}
	srcs := make([]*logSource, len(ports))
	found := 0
	for i, p := range ports {
		prefix := fmt.Sprintf("%-*d | ", width, p)
		if o.Color {
			prefix = colors[i%len(colors)] + prefix + "\033[0m"
		}
		path := provider.LogFile(c.Spec, spec.Node{Host: c.Spec.Host, Port: p})
		if path == "" {
			return fmt.Errorf("runtime %s: rcluster keeps no logs of nodes it did not start", c.Spec.RuntimeName())
		}
		srcs[i] = &logSource{path: path, prefix: prefix}
		if _, err := os.Stat(srcs[i].path); err == nil {
			found++
		}
	}
	if found == 0 && !o.Follow {
		return fmt.Errorf("no node logs in %s (has the cluster been started with `rcluster up`?)", c.Spec.LogDir())
	}
	bw := bufio.NewWriter(w)
	// Snapshot: each file up to its current size, from Tail lines back.
	for _, s := range srcs {
		if err := s.open(o.Tail); err != nil {
			return err
		}
	}
	if err := mergeLines(bw, srcs, func(s *logSource) ([]byte, bool) { return s.nextSnapshot() }); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil || !o.Follow {
		for _, s := range srcs {
			s.close()
		}
		return err
	}
	defer func() {
		for _, s := range srcs {
			s.close()
		}
	}()
	poll := o.Poll
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return bw.Flush()
		case <-t.C:
		}
		for _, s := range srcs {
			s.readNew()
		}
		if err := mergeLines(bw, srcs, func(s *logSource) ([]byte, bool) { return s.nextNew() }); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
	}
}

// PortError is a port that is not one of the spec's nodes.
type PortError struct {
	Port  int
	Ports []int
}

func (e *PortError) Error() string {
	return fmt.Sprintf("port %d is not a node of this cluster (ports: %s)", e.Port, formatPorts(e.Ports))
}

func formatPorts(ps []int) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ", ")
}

var colors = []string{"\033[36m", "\033[33m", "\033[32m", "\033[35m", "\033[34m", "\033[96m", "\033[93m", "\033[92m", "\033[95m", "\033[94m"}

// logSource is one node's log file.
type logSource struct {
	path   string
	prefix string

	f      *os.File
	ino    uint64
	off    int64 // next byte to read when following
	snap   *bufio.Reader
	head   []byte // pending line (without newline) and its time
	headT  time.Time
	lastT  time.Time
	hasHd  bool
	newBuf []byte   // unterminated tail of the last follow read
	lines  [][]byte // complete new lines of this follow round
}

func (s *logSource) close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// open positions the snapshot reader tail lines before the end (tail < 0:
// at the start) and remembers the end as the follow offset.
func (s *logSource) open(tail int) error {
	f, err := os.Open(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("log %s: %w", s.path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("log %s: %w", s.path, err)
	}
	s.f, s.ino = f, inode(fi)
	size := fi.Size()
	start := int64(0)
	if tail >= 0 {
		start, err = tailOffset(f, size, tail)
		if err != nil {
			return fmt.Errorf("log %s: %w", s.path, err)
		}
	}
	// A line still being written is left for follow to print whole.
	end, err := completeEnd(f, size)
	if err != nil {
		return fmt.Errorf("log %s: %w", s.path, err)
	}
	start = min(start, end)
	s.off = end
	s.snap = bufio.NewReaderSize(io.NewSectionReader(f, start, end-start), 64<<10)
	return nil
}

// completeEnd returns the offset just after the last newline of f's first
// size bytes (size itself when the unterminated rest is longer than a line
// may be).
func completeEnd(f *os.File, size int64) (int64, error) {
	k := min(size, maxLineLen)
	buf := make([]byte, k)
	if _, err := f.ReadAt(buf, size-k); err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		return size - k + int64(i) + 1, nil
	}
	if size > maxLineLen {
		return size, nil
	}
	return 0, nil
}

// tailOffset returns the offset of the n-th line from the end of f's first
// size bytes, reading backwards in blocks (so a huge log costs only what
// is shown).
func tailOffset(f *os.File, size int64, n int) (int64, error) {
	if n == 0 {
		return size, nil
	}
	const block = 32 << 10
	buf := make([]byte, block)
	end := size
	// A final newline ends the last line; it does not start another one.
	if end > 0 {
		if _, err := f.ReadAt(buf[:1], end-1); err != nil {
			return 0, err
		}
		if buf[0] == '\n' {
			end--
		}
	}
	count := 0
	for pos := end; pos > 0; {
		k := min(int64(block), pos)
		pos -= k
		if _, err := f.ReadAt(buf[:k], pos); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := k - 1; i >= 0; i-- {
			if buf[i] == '\n' {
				count++
				if count == n {
					return pos + i + 1, nil
				}
			}
		}
	}
	return 0, nil
}

// readLine reads one line, cut at maxLineLen; ok is false at the end.
func readLine(r *bufio.Reader) ([]byte, bool) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line) < maxLineLen {
			line = append(line, chunk[:min(len(chunk), maxLineLen-len(line))]...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil && len(line) == 0 {
			return nil, false
		}
		return bytes.TrimRight(line, "\r\n"), true
	}
}

func (s *logSource) nextSnapshot() ([]byte, bool) {
	if s.snap == nil {
		return nil, false
	}
	return readLine(s.snap)
}

func (s *logSource) nextNew() ([]byte, bool) {
	if len(s.lines) == 0 {
		return nil, false
	}
	l := s.lines[0]
	s.lines = s.lines[1:]
	return l, true
}

// readNew collects the complete lines appended since the last round,
// reopening the file when it was replaced or truncated (rotation).
func (s *logSource) readNew() {
	fi, err := os.Stat(s.path)
	if err != nil {
		return // not there (yet)
	}
	if s.f == nil || inode(fi) != s.ino || fi.Size() < s.off {
		s.close()
		f, err := os.Open(s.path)
		if err != nil {
			return
		}
		s.f, s.ino, s.off, s.newBuf = f, inode(fi), 0, nil
	}
	if fi.Size() <= s.off {
		return
	}
	n := min(fi.Size()-s.off, maxReadChunk)
	buf := make([]byte, n)
	k, err := s.f.ReadAt(buf, s.off)
	if err != nil && !errors.Is(err, io.EOF) {
		return
	}
	s.off += int64(k)
	data := append(s.newBuf, buf[:k]...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		line := bytes.TrimRight(data[:i], "\r")
		if len(line) > maxLineLen {
			line = line[:maxLineLen]
		}
		s.lines = append(s.lines, line)
		data = data[i+1:]
	}
	if len(data) > maxLineLen {
		// An endless unterminated line: show what we have.
		s.lines = append(s.lines, data[:maxLineLen])
		data = nil
	}
	s.newBuf = slices.Clone(data)
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// mergeLines writes the sources' lines in timestamp order (a stable k-way
// merge: a line without a timestamp keeps its predecessor's time).
func mergeLines(w io.Writer, srcs []*logSource, next func(*logSource) ([]byte, bool)) error {
	fill := func(s *logSource) {
		line, ok := next(s)
		if !ok {
			s.hasHd = false
			return
		}
		if t, ok := lineTime(line); ok {
			s.lastT = t
		}
		s.head, s.headT, s.hasHd = line, s.lastT, true
	}
	for _, s := range srcs {
		fill(s)
	}
	for {
		var best *logSource
		for _, s := range srcs {
			if s.hasHd && (best == nil || s.headT.Before(best.headT)) {
				best = s
			}
		}
		if best == nil {
			return nil
		}
		if _, err := fmt.Fprintf(w, "%s%s\n", best.prefix, best.head); err != nil {
			return err
		}
		fill(best)
	}
}

// lineTime reads the time of a redis log line:
// "12345:M 05 Mar 2024 10:00:00.123 * Ready to accept connections".
func lineTime(line []byte) (time.Time, bool) {
	i := bytes.IndexByte(line, ' ')
	if i < 0 || i+25 > len(line) || !bytes.Contains(line[:i], []byte(":")) {
		return time.Time{}, false
	}
	t, err := time.Parse("02 Jan 2006 15:04:05.000", string(line[i+1:i+25]))
	return t, err == nil
}
