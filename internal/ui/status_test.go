package ui

import (
	"bytes"
	"strings"
	"testing"
)

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
