package ui

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// openPTY returns the two ends of a new pseudo-terminal: what the program
// writes to tty, the test reads from ptm.
func openPTY(t *testing.T) (ptm, tty *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptm.Close() })
	ioctl := func(req uintptr, arg unsafe.Pointer) error {
		raw, err := ptm.SyscallConn()
		if err != nil {
			return err
		}
		var errno syscall.Errno
		if err := raw.Control(func(fd uintptr) {
			_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(arg))
		}); err != nil {
			return err
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
	var unlock int32
	if err := ioctl(syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	var n uint32
	if err := ioctl(syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pts: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	return ptm, tty
}

// readAvailable reads what the terminal has received until it stays quiet
// for a short while (bounded overall).
func readAvailable(t *testing.T, ptm *os.File) string {
	t.Helper()
	var out bytes.Buffer
	buf := make([]byte, 4096)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if err := ptm.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			t.Fatalf("set deadline: %v", err)
		}
		n, err := ptm.Read(buf)
		out.Write(buf[:n])
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("read pty: %v", err)
		}
	}
	return out.String()
}

// runSteps drives a Status through one good and one failed step.
func runSteps(s *Status) {
	s.Start("Starting nodes")
	s.End(true)
	s.Start("Forming")
	s.End(false)
	s.Infof("done")
}

func TestColourOnlyOnATerminal(t *testing.T) {
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

	// A terminal: green and red marks.
	ptm, tty := openPTY(t)
	if !UseColor(tty) {
		t.Fatal("UseColor(pty) = false")
	}
	runSteps(NewStatus(tty))
	got := readAvailable(t, ptm)
	for _, want := range []string{"\033[32m✓\033[0m Starting nodes", "\033[31m✗\033[0m Forming", "\r\033[K"} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output lacks %q: %q", want, got)
		}
	}
}

func TestNoColorAndDumbTerminal(t *testing.T) {
	ptm, tty := openPTY(t)
	for _, env := range []struct{ noColor, term string }{{"1", "xterm"}, {"", "dumb"}} {
		t.Run(fmt.Sprintf("NO_COLOR=%q TERM=%s", env.noColor, env.term), func(t *testing.T) {
			t.Setenv("NO_COLOR", env.noColor)
			t.Setenv("TERM", env.term)
			if UseColor(tty) {
				t.Fatal("UseColor = true")
			}
			runSteps(NewStatus(tty))
			got := readAvailable(t, ptm)
			if strings.Contains(got, "\033") {
				t.Errorf("escape codes despite NO_COLOR/TERM=dumb: %q", got)
			}
			if !strings.Contains(got, "✓ Starting nodes") {
				t.Errorf("output lacks the step line: %q", got)
			}
		})
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
