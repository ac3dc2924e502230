package confgen

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("rendered config differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func parse(t *testing.T, data, path string) *spec.Spec {
	t.Helper()
	s, err := spec.Parse([]byte(data), path)
	if err != nil {
		t.Fatalf("parse spec: %v", err)
	}
	return s
}

func renderNode(t *testing.T, s *spec.Spec, port int) []byte {
	t.Helper()
	b, err := Render(s, spec.Node{Host: s.Host, Port: port})
	if err != nil {
		t.Fatalf("render node %d: %v", port, err)
	}
	return b
}

func TestGoldenDefault(t *testing.T) {
	s, err := spec.Default()
	if err != nil {
		t.Fatal(err)
	}
	s.Dir = "/srv/rcluster/dev"
	golden(t, "default", renderNode(t, s, 7001))
}

func TestGoldenOverrides(t *testing.T) {
	s := parse(t, `name: shop
ports: 7101-7106
replicas: 1
dir: "state dir/shop"
config:
  cluster-node-timeout: 2000
  appendonly: false
  Protected-Mode: no
  repl-diskless-sync-delay: 1
  save: ""
  maxmemory: 100mb
  client-output-buffer-limit: [replica, 256mb, 64mb, 60]
  notify-keyspace-events: ""
`, "/srv/specs/cluster.yaml")
	got := renderNode(t, s, 7104)
	golden(t, "overrides", got)
	// Overrides replace the template's line instead of repeating it.
	for _, key := range []string{"cluster-node-timeout", "appendonly", "protected-mode", "repl-diskless-sync-delay"} {
		if n := countDirective(got, key); n != 1 {
			t.Errorf("%s appears %d times, want once", key, n)
		}
	}
}

func TestGoldenCustomTemplate(t *testing.T) {
	abs, err := filepath.Abs("testdata/custom.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := parse(t, `name: custom
template: custom.tmpl
dir: /srv/rcluster/custom
config:
  maxmemory: 128mb
  hz: 20
`, abs)
	if want := filepath.Join(filepath.Dir(abs), "custom.tmpl"); s.Template != want {
		t.Fatalf("template = %q, want %q", s.Template, want)
	}
	golden(t, "custom", renderNode(t, s, 7002))
}

func TestTemplateErrors(t *testing.T) {
	s, _ := spec.Default()
	s.Template = filepath.Join(t.TempDir(), "missing.tmpl")
	if _, err := Render(s, s.Nodes()[0]); err == nil || !strings.Contains(err.Error(), "missing.tmpl") {
		t.Errorf("missing template: err = %v, want one naming the file", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.tmpl")
	if err := os.WriteFile(bad, []byte("port {{.Nope}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Template = bad
	s.Dir = t.TempDir()
	if _, err := Write(s); err == nil || !strings.Contains(err.Error(), "node 7001") {
		t.Errorf("template with unknown field: err = %v, want a render error naming node 7001", err)
	}
	if _, err := os.Stat(s.ConfDir()); !os.IsNotExist(err) {
		t.Errorf("failed render left %s behind (stat err %v)", s.ConfDir(), err)
	}
}

// TestSeedMatchesDefault: the repository's cluster.yaml renders exactly
// what running without a spec renders.
func TestSeedMatchesDefault(t *testing.T) {
	seed, err := spec.Load("../../cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def, err := spec.Default()
	if err != nil {
		t.Fatal(err)
	}
	seed.Dir, def.Dir = "/x", "/x"
	if a, b := renderNode(t, seed, 7003), renderNode(t, def, 7003); !bytes.Equal(a, b) {
		t.Errorf("seed cluster.yaml renders\n%s\nbuilt-in default renders\n%s", a, b)
	}
}

func TestQuote(t *testing.T) {
	tests := map[string]string{
		"/srv/rcluster/dev/db":  "/srv/rcluster/dev/db",
		"nodes-7001.conf":       "nodes-7001.conf",
		"":                      `""`,
		"/my dir/a":             `"/my dir/a"`,
		`a"b`:                   `"a\"b"`,
		`back\slash`:            `"back\\slash"`,
		"it's":                  `"it's"`,
		"tab\there\nnl\x01\x7f": `"tab\there\nnl\x01\x7f"`,
		"ünïcode":               "ünïcode",
	}
	for in, want := range tests {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestWriteModes(t *testing.T) {
	s, _ := spec.Default()
	s.Dir = filepath.Join(t.TempDir(), "state")
	paths, err := Write(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 {
		t.Fatalf("Write returned %v, want 3 paths", paths)
	}
	check := func() {
		t.Helper()
		for i, port := range s.Ports {
			if paths[i] != s.ConfFile(port) {
				t.Errorf("path %d = %s, want %s", i, paths[i], s.ConfFile(port))
			}
			checkMode(t, paths[i], 0o600)
			got, err := os.ReadFile(paths[i])
			if err != nil {
				t.Fatal(err)
			}
			if want := renderNode(t, s, port); !bytes.Equal(got, want) {
				t.Errorf("%s does not hold the rendered config:\n%s", paths[i], got)
			}
			checkMode(t, s.DataDir(port), os.ModeDir|0o700)
		}
		for _, d := range []string{s.ConfDir(), s.RunDir(), s.LogDir(), s.DBDir()} {
			checkMode(t, d, os.ModeDir|0o700)
		}
		entries, _ := os.ReadDir(s.ConfDir())
		if len(entries) != 3 {
			t.Errorf("conf dir holds %d entries, want 3 (no temp files left)", len(entries))
		}
	}
	check()
	checkMode(t, s.Dir, os.ModeDir|0o700) // created by Write

	// A rewrite tightens a loosened layout and replaces a stale config.
	if err := os.Chmod(s.LogDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.ConfFile(7002), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(s.ConfFile(7002), 0o644); err != nil {
		t.Fatal(err)
	}
	if paths, err = Write(s); err != nil {
		t.Fatal(err)
	}
	check()
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != want {
		t.Errorf("%s mode = %v, want %v", path, fi.Mode(), want)
	}
}

func countDirective(conf []byte, key string) int {
	n := 0
	for _, line := range strings.Split(string(conf), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.EqualFold(f[0], key) {
			n++
		}
	}
	return n
}

// TestRedisAcceptsConfig starts a real redis-server from a rendered config
// whose paths contain spaces and checks the settings it runs with.
func TestRedisAcceptsConfig(t *testing.T) {
	redistest.Integration(t)
	bin := redistest.RequireBinary(t, "redis-server")
	port := redistest.PortBlock(t, 1)
	s, err := spec.Default()
	if err != nil {
		t.Fatal(err)
	}
	s.Dir = filepath.Join(t.TempDir(), "state dir", `it's "quoted"`)
	s.Ports = spec.Ports{port}
	s.Config = spec.Config{{Key: "cluster-node-timeout", Value: "3000"}, {Key: "save", Value: ""}, {Key: "hz", Value: "20"}}
	paths, err := Write(s)
	if err != nil {
		t.Fatal(err)
	}

	// Foreground, so the test owns the process; everything else is the file's.
	var out bytes.Buffer // redis-server reports config errors on stdout/stderr
	cmd := exec.Command(bin, paths[0], "--daemonize", "no")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = serverSysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pingCtx, stopPing := context.WithCancel(ctx) // stop waiting if the server exits
	defer stopPing()
	go func() {
		select {
		case <-exited:
			stopPing()
		case <-pingCtx.Done():
		}
	}()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := redistest.WaitPing(pingCtx, addr); err != nil {
		_ = cmd.Process.Kill()
		<-exited // out is complete and no longer written to
		log, _ := os.ReadFile(s.LogFile(port))
		t.Fatalf("redis-server with rendered config not ready: %v\noutput:\n%s\nlog:\n%s", err, out.Bytes(), log)
	}
	c := redisconn.Options{}.Node(addr)
	defer c.Close()
	dataDir, err := filepath.EvalSymlinks(s.DataDir(port))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"port":                     strconv.Itoa(port),
		"bind":                     "127.0.0.1",
		"protected-mode":           "yes",
		"cluster-enabled":          "yes",
		"cluster-config-file":      s.NodesFileName(port),
		"cluster-node-timeout":     "3000",
		"appendonly":               "yes",
		"save":                     "",
		"hz":                       "20",
		"repl-diskless-sync-delay": "0",
		"repl-diskless-load":       "on-empty-db",
		"pidfile":                  s.PidFile(port),
		"logfile":                  s.LogFile(port),
		"dir":                      dataDir,
	}
	for key, val := range want {
		got, err := c.ConfigGet(ctx, key).Result()
		if err != nil {
			t.Fatalf("CONFIG GET %s: %v", key, err)
		}
		if got[key] != val {
			t.Errorf("CONFIG GET %s = %q, want %q", key, got[key], val)
		}
	}
	for _, f := range []string{s.PidFile(port), s.LogFile(port), s.NodesFile(port)} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("redis-server did not create %s: %v", f, err)
		}
	}

	_ = c.ShutdownNoSave(ctx).Err() // the connection drops as the server exits
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("redis-server exited with %v after SHUTDOWN NOSAVE", waitErr)
		}
	case <-ctx.Done():
		t.Fatalf("redis-server did not exit after SHUTDOWN NOSAVE")
	}
}

func TestLargeClustersGetALongerNodeTimeout(t *testing.T) {
	for _, tc := range []struct {
		ports, extra string
		want         string
	}{
		{`"20000-20002"`, "", "cluster-node-timeout 5000\n"},
		{`"20000-20149"`, "", "cluster-node-timeout 15000\n"},
		{`"20000-20299"`, "replicas: 1\n", "cluster-node-timeout 30000\n"},
		{`"20000-20299"`, "config:\n  cluster-node-timeout: 20000\n", "cluster-node-timeout 20000\n"},
	} {
		yaml := "ports: " + tc.ports + "\n" + tc.extra
		s, err := spec.Parse([]byte(yaml), filepath.Join(t.TempDir(), "cluster.yaml"))
		if err != nil {
			t.Fatalf("%s: %v", yaml, err)
		}
		conf, err := Render(s, s.Nodes()[0])
		if err != nil {
			t.Fatal(err)
		}
		if got := string(conf); !strings.Contains(got, tc.want) || strings.Count(got, "cluster-node-timeout") != 1 {
			t.Errorf("%s: config lacks a single %q", yaml, strings.TrimSpace(tc.want))
		}
	}
}
