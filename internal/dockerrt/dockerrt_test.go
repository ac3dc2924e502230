package dockerrt

import (
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"

	"github.com/rcluster/rcluster/internal/spec"
)

func TestNamesAndLabels(t *testing.T) {
	a := &spec.Spec{Name: "shop", Dir: "/srv/a/.rcluster/shop"}
	b := &spec.Spec{Name: "shop", Dir: "/srv/b/.rcluster/shop"}
	na, nb := ContainerName(a, 7001), ContainerName(b, 7001)
	if na == nb {
		t.Errorf("two dirs, one container name %s", na)
	}
	if na != ContainerName(a, 7001) {
		t.Error("ContainerName is not stable")
	}
	// Docker's rule for container names.
	if !regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`).MatchString(na) || !strings.HasPrefix(na, "rcluster-shop-") || !strings.HasSuffix(na, "-7001") {
		t.Errorf("container name %q", na)
	}
	l := Labels(a, spec.Node{Host: "127.0.0.1", Port: 7001})
	want := map[string]string{LabelCluster: "shop", LabelDir: a.Dir, LabelPort: "7001", LabelHost: "127.0.0.1"}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("label %s = %q, want %q", k, l[k], v)
		}
	}
}

func TestDescribeStopped(t *testing.T) {
	got := describeStopped("c1", &container.State{Status: container.StateExited, ExitCode: 1, OOMKilled: true, Error: "boom"})
	if got != "container c1 is exited (exit code 1, out of memory): boom" {
		t.Errorf("describeStopped = %q", got)
	}
	if got := describeStopped("c2", &container.State{Status: container.StateCreated}); got != "container c2 is created" {
		t.Errorf("describeStopped = %q", got)
	}
}

func TestCheckFree(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	err = checkFree(spec.Node{Host: "127.0.0.1", Port: port})
	if err == nil || !strings.Contains(err.Error(), "port "+strconv.Itoa(port)+" is in use on the host") {
		t.Errorf("checkFree on a listening port: %v", err)
	}
	// A bus port in use is named too.
	if port > spec.BusPortOffset {
		err = checkFree(spec.Node{Host: "127.0.0.1", Port: port - spec.BusPortOffset})
		if err == nil || !strings.Contains(err.Error(), "port "+strconv.Itoa(port)+" is in use") {
			t.Errorf("checkFree with its bus port in use: %v", err)
		}
	}
}
