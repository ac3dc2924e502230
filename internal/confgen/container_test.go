package confgen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rcluster/rcluster/internal/spec"
)

// directives maps each directive of a rendered config to its value
// (the last one when repeated) and counts repeats.
func directives(t *testing.T, conf []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(string(conf), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		k := strings.ToLower(f[0])
		if _, dup := out[k]; dup && k != "save" {
			t.Errorf("directive %q appears twice:\n%s", k, conf)
		}
		out[k] = strings.Join(f[1:], " ")
	}
	return out
}

func TestRenderContainer(t *testing.T) {
	s := parse(t, "runtime: docker\nhost: 127.0.0.1\nports: 7101-7103\nconfig:\n  maxmemory: 10mb\n  cluster-node-timeout: 2000\n", "/srv/specs/cluster.yaml")
	n := spec.Node{Host: "127.0.0.1", Port: 7102}
	host, err := Render(s, n)
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := RenderContainer(s, n)
	if err != nil {
		t.Fatal(err)
	}
	h, c := directives(t, host), directives(t, ctr)
	want := map[string]string{
		"daemonize": "no",
		"dir":       "/data",
		"logfile":   "/var/log/rcluster/redis_7102.log",
		"pidfile":   "/tmp/redis.pid",
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("container config: %s = %q, want %q", k, c[k], v)
		}
	}
	// Everything else is the host config's: same node, same spec settings.
	for k, v := range h {
		if _, changed := want[k]; changed {
			continue
		}
		if c[k] != v {
			t.Errorf("container config: %s = %q, host config has %q", k, c[k], v)
		}
	}
	if len(c) != len(h) {
		t.Errorf("container config has %d directives, host config %d", len(c), len(h))
	}
	for _, k := range []string{"port", "bind", "cluster-config-file", "maxmemory", "cluster-node-timeout"} {
		if c[k] == "" {
			t.Errorf("container config lacks %s", k)
		}
	}
	if c["cluster-config-file"] != "nodes-7102.conf" || c["bind"] != "127.0.0.1" || c["port"] != "7102" {
		t.Errorf("node identity: port %q bind %q nodes file %q", c["port"], c["bind"], c["cluster-config-file"])
	}
}

func TestWriteContainer(t *testing.T) {
	dir := t.TempDir()
	s := parse(t, "runtime: docker\nports: 7101-7103\ndir: state\n", filepath.Join(dir, "cluster.yaml"))
	paths, err := WriteContainer(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 || paths[0] != s.ConfFile(7101) {
		t.Fatalf("paths = %v", paths)
	}
	for _, p := range []int{7101, 7102, 7103} {
		b, err := os.ReadFile(s.ConfFile(p))
		if err != nil {
			t.Fatal(err)
		}
		if d := directives(t, b); d["daemonize"] != "no" || d["dir"] != ContainerDataDir {
			t.Errorf("node %d: daemonize %q dir %q", p, d["daemonize"], d["dir"])
		}
		if fi, err := os.Stat(s.DataDir(p)); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("node %d data dir: %v %v", p, fi, err)
		}
	}
	if fi, err := os.Stat(s.LogDir()); err != nil || !fi.IsDir() {
		t.Errorf("log dir: %v", err)
	}
	if ContainerConfFile(7101) != "/etc/rcluster/redis_7101.conf" {
		t.Errorf("ContainerConfFile = %s", ContainerConfFile(7101))
	}
}

// TestRenderContainerBridge: with network: bridge a node binds every
// address of its own network namespace, announces its container IP, and
// runs without protected mode unless a password guards it.
func TestRenderContainerBridge(t *testing.T) {
	s := parse(t, "runtime: docker\nnetwork: bridge\nsubnet: 172.30.7.0/24\nports: 7101-7103\n", "/srv/specs/cluster.yaml")
	n := s.Nodes()[1]
	if n.Host != "172.30.7.11" {
		t.Fatalf("node 1 at %s, want 172.30.7.11", n.Host)
	}
	b, err := RenderContainer(s, n)
	if err != nil {
		t.Fatal(err)
	}
	c := directives(t, b)
	want := map[string]string{"bind": "0.0.0.0", "cluster-announce-ip": "172.30.7.11", "protected-mode": "no", "port": "7102", "daemonize": "no", "dir": "/data"}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("bridge config: %s = %q, want %q", k, c[k], v)
		}
	}

	s = parse(t, "runtime: docker\nnetwork: bridge\nsubnet: 172.30.7.0/24\nports: 7101-7103\nauth: {password: s3cret}\n", "/srv/specs/cluster.yaml")
	b, err = RenderContainer(s, s.Nodes()[0])
	if err != nil {
		t.Fatal(err)
	}
	if c := directives(t, b); c["protected-mode"] != "yes" || c["requirepass"] == "" || c["cluster-announce-ip"] != "172.30.7.10" {
		t.Errorf("bridge config with a password: protected-mode %q requirepass %q announce %q; want protected mode kept on",
			c["protected-mode"], c["requirepass"], c["cluster-announce-ip"])
	}

	// Host networking: nothing of the above.
	s = parse(t, "runtime: docker\nports: 7101-7103\n", "/srv/specs/cluster.yaml")
	b, err = RenderContainer(s, s.Nodes()[0])
	if err != nil {
		t.Fatal(err)
	}
	if c := directives(t, b); c["bind"] != "127.0.0.1" || c["protected-mode"] != "yes" || c["cluster-announce-ip"] != "" {
		t.Errorf("host-network config: bind %q protected-mode %q announce %q", c["bind"], c["protected-mode"], c["cluster-announce-ip"])
	}
}
