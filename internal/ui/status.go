// Package ui prints step status lines in kind's style: "✓ Starting nodes"
// on success, "✗ ..." on failure, with a spinner only on a real terminal.
package ui

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Status prints one line per step to w.
type Status struct {
	w       io.Writer
	animate bool
	quiet   bool

	mu      sync.Mutex
	msg     string
	started time.Time
	stop    chan struct{}
	done    chan struct{}
}

// NewStatus returns a Status writing to w. Animation and colour are used
// only when UseColor(w).
func NewStatus(w io.Writer) *Status {
	return &Status{w: w, animate: UseColor(w)}
}

// UseColor reports whether output to w may use colour and animation: only
// on a terminal, with NO_COLOR unset or empty (https://no-color.org) and
// TERM not "dumb". Piped or redirected output never gets escape codes.
func UseColor(w io.Writer) bool {
	return IsTerminal(w) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
}

// Paint wraps s in the ANSI colour code (e.g. "32" green, "31" red) when
// color is true, and returns it unchanged otherwise.
func Paint(color bool, code, s string) string {
	if !color {
		return s
	}
	return "\033[" + code + "m" + s + "\033[0m"
}

// Quiet returns a Status that prints nothing.
func Quiet() *Status { return &Status{w: io.Discard, quiet: true} }

// IsTerminal reports whether w is a character device (a terminal).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Start begins a step. A step still running is ended as failed.
func (s *Status) Start(msg string) {
	s.End(false)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msg, s.started = msg, time.Now()
	if s.quiet {
		return
	}
	if !s.animate {
		return
	}
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go s.spin(msg, s.stop, s.done)
}

func (s *Status) spin(msg string, stop, done chan struct{}) {
	defer close(done)
	frames := []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}
	t := time.NewTicker(80 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		fmt.Fprintf(s.w, "\r %s %s ", frames[i%len(frames)], msg)
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// End finishes the current step (no-op when none) with ✓ or ✗.
func (s *Status) End(ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.msg == "" {
		return
	}
	if s.stop != nil {
		close(s.stop)
		<-s.done
		s.stop = nil
		fmt.Fprint(s.w, "\r\033[K")
	}
	mark, color := "✓", "\033[32m"
	if !ok {
		mark, color = "✗", "\033[31m"
	}
	el := time.Since(s.started).Round(time.Millisecond)
	if s.animate {
		fmt.Fprintf(s.w, " %s%s\033[0m %s (%s)\n", color, mark, s.msg, el)
	} else {
		fmt.Fprintf(s.w, " %s %s (%s)\n", mark, s.msg, el)
	}
	s.msg = ""
}

// Infof prints a plain line (ends no step).
func (s *Status) Infof(format string, a ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.w, format+"\n", a...)
}
