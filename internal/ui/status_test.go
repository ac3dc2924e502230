package ui

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// runSteps drives a Status through one good and one failed step.
func runSteps(s *Status) {
	s.Start("Starting nodes")
	s.End(true)
	s.Start("Forming")
	s.End(false)
	s.Infof("done")
}

// A pipe or a buffer gets plain marks: no escape codes, no spinner.
func TestNoColourOffATerminal(t *testing.T) {
	t.Setenv("NO_COLOR", "")
	t.Setenv("TERM", "xterm")

	// A pipe: plain marks, no escape codes, no spinner.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if UseColor(w) {
		t.Error("UseColor(pipe) = true")
	}
	runSteps(NewStatus(w))
	w.Close()
	var piped bytes.Buffer
	if _, err := piped.ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(piped.String(), "\033") || strings.Contains(piped.String(), "\r") {
		t.Errorf("piped output has escape codes or carriage returns: %q", piped.String())
	}
	for _, want := range []string{" ✓ Starting nodes (", " ✗ Forming (", "done\n"} {
		if !strings.Contains(piped.String(), want) {
			t.Errorf("piped output lacks %q: %q", want, piped.String())
		}
	}

	// A buffer is not a terminal either.
	var buf bytes.Buffer
	runSteps(NewStatus(&buf))
	if strings.Contains(buf.String(), "\033") {
		t.Errorf("buffer output has escape codes: %q", buf.String())
	}
}

func TestPaint(t *testing.T) {
	if got := Paint(false, "32", "ok"); got != "ok" {
		t.Errorf("Paint(false) = %q", got)
	}
	if got := Paint(true, "32", "ok"); got != "\033[32mok\033[0m" {
		t.Errorf("Paint(true) = %q", got)
	}
}

func TestStatusPlainWhenNotATerminal(t *testing.T) {
	var b bytes.Buffer
	s := NewStatus(&b)
	s.Start("Starting nodes")
	s.End(true)
	s.Start("Forming the cluster")
	s.End(false)
	s.End(true) // no step running: no output
	out := b.String()
	if strings.Contains(out, "\033") || strings.Contains(out, "\r") {
		t.Errorf("escape codes or carriage returns written to a non-terminal: %q", out)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], " ✓ Starting nodes (") || !strings.HasPrefix(lines[1], " ✗ Forming the cluster (") {
		t.Errorf("unexpected status lines: %q", lines)
	}
}

func TestStartEndsARunningStepAsFailed(t *testing.T) {
	var b bytes.Buffer
	s := NewStatus(&b)
	s.Start("one")
	s.Start("two")
	s.End(true)
	if !strings.Contains(b.String(), "✗ one") || !strings.Contains(b.String(), "✓ two") {
		t.Errorf("got %q", b.String())
	}
}
