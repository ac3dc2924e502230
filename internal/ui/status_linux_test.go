package ui

// Pseudo-terminals are opened with Linux's ioctls (TIOCSPTLCK, TIOCGPTN),
// so the tests that need one run on Linux only.

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

// A terminal gets green and red marks and the spinner's line rewrites.
func TestColourOnATerminal(t *testing.T) {
	t.Setenv("NO_COLOR", "")
	t.Setenv("TERM", "xterm")
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
