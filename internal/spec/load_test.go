package spec

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// parseErr parses data as cluster.yaml and returns its problems as strings.
func parseErr(t *testing.T, data string) []string {
	t.Helper()
	s, err := Parse([]byte(data), "cluster.yaml")
	if err == nil {
		t.Fatalf("Parse(%q) = %+v, want an error", data, s)
	}
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("Parse error is %T, want *spec.Error: %v", err, err)
	}
	out := make([]string, len(se.Problems))
	for i, p := range se.Problems {
		out[i] = p.String()
	}
	return out
}

func mustParse(t *testing.T, data, path string) *Spec {
	t.Helper()
	s, err := Parse([]byte(data), path)
	if err != nil {
		t.Fatalf("Parse(%q): %v", data, err)
	}
	return s
}

func TestProblems(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       string // the single expected problem
	}{
		{"unknown key", "name: dev\nreplica: 1\n",
			`cluster.yaml:2: unknown key "replica" (did you mean "replicas"?)`},
		{"unknown key no suggestion", "colour: blue\n",
			`cluster.yaml:1: unknown key "colour" (known keys: name, host, ports, replicas, dir, redis_server, template, config, auth, tls, runtime, image, nodes, network, subnet)`},
		{"dash for underscore", "redis-server: /usr/bin/redis-server\n",
			`cluster.yaml:1: unknown key "redis-server" (did you mean "redis_server"?)`},
		{"duplicate key", "replicas: 0\nreplicas: 1\n",
			`cluster.yaml:2: duplicate key "replicas" (first set on line 1)`},
		{"syntax (parser)", "name: dev\nports: [7001, 7002\n",
			`cluster.yaml:2: invalid YAML: did not find expected ',' or ']'`},
		{"syntax (parser, first line)", "name: !x!y dev\n",
			`cluster.yaml:1: invalid YAML: found undefined tag handle`},
		{"syntax (parser, sequence)", "- 7001\nname: dev\n",
			`cluster.yaml:2: invalid YAML: did not find expected '-' indicator`},
		{"syntax (parser, block)", "name: dev\nports:\n  - 7001\n x: 1\n",
			`cluster.yaml:4: invalid YAML: did not find expected key`},
		{"syntax (scanner)", "name: dev\nhost: a: b\n",
			`cluster.yaml:2: invalid YAML: mapping values are not allowed in this context`},
		{"syntax (tab)", "name: dev\n\tports: []\n",
			`cluster.yaml:2: invalid YAML: found a tab character that violates indentation`},
		{"not a mapping", "- 7001\n",
			`cluster.yaml:1: the spec must be a mapping of keys (name, ports, ...), got a list`},
		{"bad name", "name: Dev!\n",
			`cluster.yaml:1: name: "Dev!" must match ^[a-z0-9][a-z0-9_-]*$`},
		{"name type", "name: [a]\n",
			`cluster.yaml:1: name: expected a string, got a list`},
		{"host hostname", "host: localhost\n",
			`cluster.yaml:1: host: "localhost" must be an IP address (hostnames are not supported yet)`},
		{"replicas type", "replicas: one\n",
			`cluster.yaml:1: replicas: expected a whole number, got "one"`},
		{"replicas negative", "replicas: -1\n",
			`cluster.yaml:1: replicas: must be 0 or more, got -1`},
		{"range syntax", "name: dev\nhost: 127.0.0.1\nports: 70a1-7003\n",
			`cluster.yaml:3: ports: "70a1-7003" is not a port range (want "first-last", e.g. "7001-7006")`},
		{"range backwards", `ports: "7003-7001"`,
			`cluster.yaml:1: ports: range "7003-7001" is backwards (7003 > 7001)`},
		{"range outside", `ports: "65530-65536"`,
			`cluster.yaml:1: ports: range "65530-65536" is outside 1..65535`},
		{"range too long", `ports: "1001-9000"`,
			`cluster.yaml:1: ports: range "1001-9000" has 8000 ports, more than 1000`},
		{"ports scalar", "ports: 7001\n",
			`cluster.yaml:1: ports: expected a list of ports or a range string like "7001-7006", got 7001`},
		{"port item type", "ports:\n  - 7001\n  - x\n  - 7003\n",
			`cluster.yaml:3: ports: item 2: expected a port number, got "x"`},
		{"empty ports", "ports: []\n",
			`cluster.yaml:1: ports: no ports given`},
		{"port out of range", "ports:\n  - 7001\n  - 7002\n  - 7003\n  - 70000\n",
			`cluster.yaml:5: ports: port 70000 is out of range 1..65535`},
		{"port zero", "ports: [0, 7001, 7002, 7003]\n",
			`cluster.yaml:1: ports: port 0 is out of range 1..65535`},
		{"duplicate port", "ports:\n  - 7001\n  - 7002\n  - 7001\n  - 7003\n",
			`cluster.yaml:4: ports: port 7001 is listed twice`},
		{"bus port clash", "ports:\n  - 7001\n  - 7002\n  - 17001\n",
			`cluster.yaml:2: ports: port 7001's cluster bus port 17001 is also node 17001's client port`},
		{"bus port too high", "ports: [7001, 7002, 60000]\n",
			`cluster.yaml:1: ports: port 60000 has cluster bus port 70000, above 65535 (use ports below 55536)`},
		{"too few masters", "ports: [7001, 7002]\n",
			`cluster.yaml:1: ports: 2 nodes with 0 replicas per master give 2 masters; Redis Cluster needs at least 3 (use at least 3 ports or fewer replicas)`},
		{"too few masters with replicas", "ports: 7001-7004\nreplicas: 1\n",
			`cluster.yaml:1: ports: 4 nodes with 1 replica per master give 2 masters; Redis Cluster needs at least 3 (use at least 6 ports or fewer replicas)`},
		{"config not a mapping", "config: [a, b]\n",
			`cluster.yaml:1: config: expected a mapping of redis.conf directives, got a list`},
		{"config nested", "config:\n  save:\n    a: 1\n",
			`cluster.yaml:3: config: "save": expected a scalar or a list of scalars, got a mapping`},
		{"config null", "config:\n  maxmemory:\n",
			`cluster.yaml:2: config: "maxmemory" has no value (write "" for an empty one)`},
		{"config duplicate", "config:\n  hz: 10\n  HZ: 20\n",
			`cluster.yaml:3: config: duplicate directive "HZ" (first set on line 2)`},
		{"config key whitespace", "config:\n  \"maxmemory policy\": noeviction\n",
			`cluster.yaml:2: config: directive name "maxmemory policy" must be one word without whitespace`},
		{"config value newline", "config:\n  hz: \"10\\nport 1\"\n",
			`cluster.yaml:2: config: value of "hz" contains a newline`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseErr(t, tt.yaml)
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), tt.want)
			}
		})
	}
}

func TestOwnedConfigKeys(t *testing.T) {
	for key, why := range OwnedKeys {
		t.Run(key, func(t *testing.T) {
			got := parseErr(t, "config:\n  hz: 10\n  "+strings.ToUpper(key)+": x\n")
			want := `cluster.yaml:3: config: "` + strings.ToUpper(key) + `" cannot be set here: ` + why
			if len(got) != 1 || got[0] != want {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
			}
		})
	}
}

func TestEveryProblemAtOnce(t *testing.T) {
	got := parseErr(t, `name: dev
ports: [7001, 7002, 7002]
replicas: 0
config:
  hz: 10
  dir: /tmp
porst: 1
`)
	want := []string{
		`cluster.yaml:2: ports: port 7002 is listed twice`,
		`cluster.yaml:6: config: "dir" cannot be set here: ` + OwnedKeys["dir"],
		`cluster.yaml:7: unknown key "porst" (did you mean "ports"?)`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Error() is the same, one problem per line.
	_, err := Parse([]byte("ports: [7001]\nname: X\n"), "c.yaml")
	wantErr := "c.yaml:1: ports: 1 node with 0 replicas per master give 1 master; Redis Cluster needs at least 3 (use at least 3 ports or fewer replicas)\n" +
		`c.yaml:2: name: "X" must match ^[a-z0-9][a-z0-9_-]*$`
	if err == nil || err.Error() != wantErr {
		t.Errorf("Error() = %v\nwant:\n%s", err, wantErr)
	}
}

func TestDefaults(t *testing.T) {
	for _, data := range []string{"", "# nothing\n", "name: dev\n", "name:\nports:\nconfig:\n"} {
		s := mustParse(t, data, "/srv/specs/cluster.yaml")
		want := &Spec{Name: "dev", Host: "127.0.0.1", Ports: Ports{7001, 7002, 7003},
			Dir: "/srv/specs/.rcluster/dev", RedisServer: "redis-server", Path: "/srv/specs/cluster.yaml"}
		s.lines = nil
		if !reflect.DeepEqual(s, want) {
			t.Errorf("Parse(%q) = %+v, want %+v", data, s, want)
		}
	}
	// The default dir follows the name.
	if s := mustParse(t, "name: shop_2\n", "/srv/cluster.yaml"); s.Dir != "/srv/.rcluster/shop_2" {
		t.Errorf("dir = %q, want /srv/.rcluster/shop_2", s.Dir)
	}
}

func TestPortForms(t *testing.T) {
	tests := map[string]Ports{
		`ports: "7001-7006"`:              {7001, 7002, 7003, 7004, 7005, 7006},
		`ports: 7001-7003`:                {7001, 7002, 7003},
		`ports: " 9000 - 9002 "`:          {9000, 9001, 9002},
		`ports: [7005, 7001, 7003]`:       {7005, 7001, 7003},
		"ports:\n  - 1\n  - 2\n  - 3\n":   {1, 2, 3},
		"ports: [0x1B59, 7002, 7_003]\n":  {7001, 7002, 7003},
		"ports: [7001, 7002, 7003, 7004]": {7001, 7002, 7003, 7004},
	}
	for data, want := range tests {
		s := mustParse(t, data, "cluster.yaml")
		if !reflect.DeepEqual(s.Ports, want) {
			t.Errorf("Parse(%q).Ports = %v, want %v", data, s.Ports, want)
		}
	}
}

func TestFullSpec(t *testing.T) {
	s := mustParse(t, `name: shop
host: 127.0.0.2
ports: 7101-7106
replicas: 1
dir: ../state/shop
redis_server: /opt/redis/bin/redis-server
template: tmpl/redis.conf.tmpl
config:
  cluster-node-timeout: 2000
  appendonly: false
  protected-mode: true
  save: ""
  client-output-buffer-limit: [replica, 256mb, 64mb, 60]
  maxmemory: 100mb
`, "/srv/specs/cluster.yaml")
	want := &Spec{
		Name: "shop", Host: "127.0.0.2", Ports: Ports{7101, 7102, 7103, 7104, 7105, 7106}, Replicas: 1,
		Dir: "/srv/state/shop", RedisServer: "/opt/redis/bin/redis-server",
		Template: "/srv/specs/tmpl/redis.conf.tmpl", Path: "/srv/specs/cluster.yaml",
		Config: Config{
			{"cluster-node-timeout", "2000"}, {"appendonly", "no"}, {"protected-mode", "yes"},
			{"save", ""}, {"client-output-buffer-limit", "replica 256mb 64mb 60"}, {"maxmemory", "100mb"},
		},
	}
	s.lines = nil
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got  %+v\nwant %+v", s, want)
	}
	if v, ok := s.Config.Get("APPENDONLY"); !ok || v != "no" {
		t.Errorf("Config.Get(APPENDONLY) = %q, %v", v, ok)
	}
}

func TestRelativeDir(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, dir, want string }{
		{"cluster.yaml", "./state", filepath.Join(wd, "state")},
		{"sub/cluster.yaml", "state", filepath.Join(wd, "sub", "state")},
		{"sub/cluster.yaml", "../state", filepath.Join(wd, "state")},
		{"/srv/a/cluster.yaml", "/var/lib/x", "/var/lib/x"},
		{"", "state", filepath.Join(wd, "state")},
	}
	for _, tt := range tests {
		s := mustParse(t, "dir: "+tt.dir+"\n", tt.path)
		if s.Dir != tt.want {
			t.Errorf("spec %q dir %q: Dir = %q, want %q", tt.path, tt.dir, s.Dir, tt.want)
		}
	}
}

// TestSeedFile keeps the repository's cluster.yaml loadable and equal to the
// built-in default plus its explicit cluster-node-timeout.
func TestSeedFile(t *testing.T) {
	s, err := Load("../../cluster.yaml")
	if err != nil {
		t.Fatalf("load seed cluster.yaml: %v", err)
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	d.Dir = filepath.Join(repo, ".rcluster", "dev")
	d.Path = "../../cluster.yaml"
	d.Config = Config{{"cluster-node-timeout", "5000"}}
	s.lines = nil
	if !reflect.DeepEqual(s, d) {
		t.Errorf("seed cluster.yaml = %+v\nwant %+v", s, d)
	}
}

func TestDefault(t *testing.T) {
	s, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if s.Dir != filepath.Join(wd, ".rcluster", "dev") || s.Masters() != 3 || s.Path != "" {
		t.Errorf("Default() = %+v", s)
	}
	if err := s.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

func TestValidateWithoutFile(t *testing.T) {
	s := &Spec{Name: "x", Host: "::1", Ports: Ports{7001, 7002, 7002}, Dir: "/d", RedisServer: "redis-server",
		Config: Config{{"pidfile", "/p"}}}
	err := s.Validate()
	want := "ports: port 7002 is listed twice\nconfig: \"pidfile\" cannot be set here: " + OwnedKeys["pidfile"]
	if err == nil || err.Error() != want {
		t.Errorf("Validate() = %v\nwant:\n%s", err, want)
	}
	s.Ports, s.Config = Ports{7001, 7002, 7003}, nil
	if err := s.Validate(); err != nil {
		t.Errorf("valid spec: %v", err)
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }

	// Nothing: the built-in default.
	s, err := Resolve("", getenv)
	if err != nil || s.Path != "" || s.Dir != filepath.Join(dir, ".rcluster", "dev") {
		t.Fatalf("Resolve with nothing = %+v, %v", s, err)
	}
	// ./cluster.yaml when present.
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("cluster.yaml", "name: local\n")
	write("env.yaml", "name: env\n")
	write("flag.yaml", "name: flag\n")
	if s, err = Resolve("", getenv); err != nil || s.Name != "local" || s.Path != "cluster.yaml" {
		t.Fatalf("Resolve with ./cluster.yaml = %+v, %v", s, err)
	}
	// $RCLUSTER_FILE beats ./cluster.yaml; the flag beats both.
	env[EnvFile] = "env.yaml"
	if s, err = Resolve("", getenv); err != nil || s.Name != "env" {
		t.Fatalf("Resolve with env = %+v, %v", s, err)
	}
	if s, err = Resolve("flag.yaml", getenv); err != nil || s.Name != "flag" {
		t.Fatalf("Resolve with flag = %+v, %v", s, err)
	}
	// A named file that is missing is a spec error wrapping the os error.
	for _, tc := range []struct{ flag, env string }{{"missing.yaml", ""}, {"", "missing.yaml"}} {
		env[EnvFile] = tc.env
		_, err = Resolve(tc.flag, getenv)
		var se *Error
		if !errors.As(err, &se) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.yaml") {
			t.Errorf("Resolve(%q) with %s=%q: err = %T %v, want *spec.Error naming missing.yaml and wrapping ErrNotExist",
				tc.flag, EnvFile, tc.env, err, err)
		}
	}
}
