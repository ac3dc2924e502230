package e2e

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestUpDoesNotLeakInheritedFDsToNodes: a descriptor rcluster inherited (a
// CI runner's output pipe, a flock(1) lock) is not handed on to the
// redis-server daemons it starts: once `rcluster up` exits, the pipe's
// reader sees end-of-file although the nodes run on. (A daemon holding it
// would keep a CI step reading that pipe waiting for as long as the
// cluster runs.)
func TestUpDoesNotLeakInheritedFDsToNodes(t *testing.T) {
	dir, _ := writeSpec(t, 3, 0, "")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(binary, "up")
	cmd.Dir = dir
	cmd.ExtraFiles = []*os.File{w} // fd 3 in rcluster, without close-on-exec
	if out, err := cmd.CombinedOutput(); err != nil {
		w.Close()
		t.Fatalf("rcluster up: %v\n%s", err, out)
	}
	w.Close()
	if err := r.SetReadDeadline(time.Now().Add(3 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = r.Read(make([]byte, 1))
	switch {
	case errors.Is(err, io.EOF):
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Errorf("the pipe rcluster inherited is still open after up exited: a node holds it")
	default:
		t.Errorf("read from the inherited pipe: %v, want EOF", err)
	}
	if st := status(t, dir); len(st) != 3 {
		t.Errorf("status lists %d nodes, want 3 running", len(st))
	}
}
