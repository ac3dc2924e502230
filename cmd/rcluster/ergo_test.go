package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"

	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/verify"
)

// run calls Run in-process and returns stdout, stderr and the exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, append([]string{"rcluster"}, args...), &out, &errb)
	code := ExitCode(err, &errb)
	return out.String(), errb.String(), code
}

// writeSpecFile writes a spec into a temp dir and returns its path.
func writeSpecFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// commandNamesFromHelp reads the COMMANDS section of `rcluster --help`.
func commandNamesFromHelp(t *testing.T) []string {
	t.Helper()
	out, _, code := run(t, "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	_, rest, ok := strings.Cut(out, "COMMANDS:\n")
	if !ok {
		t.Fatalf("--help has no COMMANDS section:\n%s", out)
	}
	var names []string
	for _, line := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(line, "   ") {
			break
		}
		f := strings.Fields(line)
		names = append(names, strings.TrimSuffix(f[0], ","))
	}
	return names
}

func TestEveryCommandHasHelpWithExample(t *testing.T) {
	names := commandNamesFromHelp(t)
	for _, want := range []string{"up", "down", "status", "verify", "env", "init", "render", "ls", "completion"} {
		if !slices.Contains(names, want) {
			t.Errorf("--help does not list %q: %v", want, names)
		}
	}
	for _, name := range names {
		out, _, code := run(t, name, "--help")
		if code != 0 {
			t.Errorf("%s --help: exit %d", name, code)
			continue
		}
		if !strings.Contains(out, "rcluster "+name) || !strings.Contains(out, "Example") {
			t.Errorf("%s --help lacks a usage line or an example:\n%s", name, out)
		}
		for _, flag := range []string{"--quiet", "--verbose"} {
			if !strings.Contains(out, flag) {
				t.Errorf("%s --help does not list %s", name, flag)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	out, _, code := run(t, "--version")
	if code != 0 || !regexp.MustCompile(`^rcluster \S+`).MatchString(out) {
		t.Errorf("--version: exit %d, %q", code, out)
	}
	// -v is --verbose, not the version.
	out, _, _ = run(t, "-v", "--help")
	if strings.HasPrefix(out, "rcluster dev") || !strings.Contains(out, "COMMANDS") {
		t.Errorf("-v --help printed %q", out)
	}
}

func TestMistypedCommandSuggests(t *testing.T) {
	tests := []struct{ typed, want string }{
		{"stauts", `unknown command "stauts". Did you mean "status"?`},
		{"verfiy", `Did you mean "verify"?`},
		{"dwn", `Did you mean "down"?`},
		{"rendr", `Did you mean "render"?`},
		{"stat", `Did you mean "status"?`},
		{"frobnicate", `unknown command "frobnicate" (see ` + "`rcluster --help`)"},
	}
	for _, tt := range tests {
		out, errOut, code := run(t, tt.typed)
		if code != 2 || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("rcluster %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", tt.typed, code, out, errOut, tt.want)
		}
	}
	_, errOut, code := run(t, "verify", "--jsn")
	if code != 2 || !strings.Contains(errOut, `Did you mean "--json"?`) {
		t.Errorf("verify --jsn: exit %d, %q", code, errOut)
	}
	_, errOut, code = run(t, "completion", "bsh")
	if code != 2 || !strings.Contains(errOut, `Did you mean "bash"?`) {
		t.Errorf("completion bsh: exit %d, %q", code, errOut)
	}
}

func TestSuggest(t *testing.T) {
	cands := []string{"up", "down", "status", "verify", "env", "init", "render", "ls", "list", "completion"}
	tests := map[string]string{
		"stauts": "status", "Status": "status", "verfy": "verify", "inti": "init", "lst": "ls",
		"compl": "completion", "xyzzy": "", "u": "", "environment": "", "pu": "up",
	}
	for in, want := range tests {
		if got := suggest(in, cands); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, _, code := run(t, "completion", sh)
		if code != 0 || !strings.Contains(out, "rcluster") {
			t.Errorf("completion %s: exit %d\n%s", sh, code, out)
		}
		if sh == "fish" && !strings.Contains(out, "complete -c rcluster") {
			t.Errorf("fish script lacks complete -c rcluster:\n%s", out)
		}
		if sh == "bash" || sh == "zsh" {
			if _, err := exec.LookPath(sh); err != nil {
				continue
			}
			f := filepath.Join(t.TempDir(), "script")
			if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command(sh, "-n", f).CombinedOutput(); err != nil {
				t.Errorf("%s -n on the %s script: %v\n%s", sh, sh, err, b)
			}
		}
	}
	if _, _, code := run(t, "completion"); code != 2 {
		t.Errorf("completion without a shell: exit %d, want 2", code)
	}
}

func TestEnvFormats(t *testing.T) {
	path := writeSpecFile(t, "name: shop\nports: 7101-7106\nreplicas: 1\n")
	wantNodes := "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103,127.0.0.1:7104,127.0.0.1:7105,127.0.0.1:7106"

	out, _, code := run(t, "env", "-f", path, "--format", "json")
	if code != 0 {
		t.Fatalf("env --format json: exit %d", code)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("env json: %v\n%s", err, out)
	}
	if strings.Contains(out, `\u0026`) {
		t.Errorf("json output escapes &: %s", out)
	}
	want := map[string]string{
		"REDIS_CLUSTER_NODES": wantNodes,
		"REDIS_HOST":          "127.0.0.1",
		"REDIS_PORT":          "7101",
		"REDIS_URL":           "redis://127.0.0.1:7101",
		"REDIS_CLUSTER_URL":   "redis://127.0.0.1:7101?addr=127.0.0.1:7102&addr=127.0.0.1:7103&addr=127.0.0.1:7104&addr=127.0.0.1:7105&addr=127.0.0.1:7106",
		"RCLUSTER_FILE":       path,
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("env json = %v\nwant %v", m, want)
	}

	// go-redis reads the cluster URL back as every node.
	o, err := redis.ParseClusterURL(m["REDIS_CLUSTER_URL"])
	if err != nil {
		t.Fatalf("ParseClusterURL: %v", err)
	}
	if got := strings.Join(o.Addrs, ","); got != wantNodes {
		t.Errorf("ParseClusterURL addrs = %s, want %s", got, wantNodes)
	}
	if _, err := redis.ParseURL(m["REDIS_URL"]); err != nil {
		t.Errorf("ParseURL(REDIS_URL): %v", err)
	}

	// shell: eval-able, every value intact.
	if _, err := exec.LookPath("bash"); err == nil {
		out, _, code = run(t, "env", "-f", path)
		if code != 0 || !strings.HasPrefix(out, "export REDIS_CLUSTER_NODES='") {
			t.Fatalf("env: exit %d\n%s", code, out)
		}
		script := out + `printf '%s\n' "$REDIS_CLUSTER_NODES" "$REDIS_URL" "$REDIS_CLUSTER_URL" "$RCLUSTER_FILE"`
		b, err := exec.Command("bash", "-c", script).Output()
		if err != nil {
			t.Fatalf("bash eval: %v", err)
		}
		wantLines := strings.Join([]string{wantNodes, want["REDIS_URL"], want["REDIS_CLUSTER_URL"], path}, "\n") + "\n"
		if string(b) != wantLines {
			t.Errorf("after eval:\n%s\nwant:\n%s", b, wantLines)
		}
	}

	// dotenv: KEY=VALUE lines.
	out, _, _ = run(t, "env", "-f", path, "--format", "dotenv")
	if !strings.Contains(out, "REDIS_CLUSTER_NODES="+wantNodes+"\n") || !strings.Contains(out, "REDIS_URL=redis://127.0.0.1:7101\n") {
		t.Errorf("dotenv:\n%s", out)
	}

	// IPv6: bracketed addresses, still one node per addr for go-redis.
	out, _, _ = run(t, "env", "-f", writeSpecFile(t, "host: \"::1\"\n"), "--format", "json")
	m = nil
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	if o, err := redis.ParseClusterURL(m["REDIS_CLUSTER_URL"]); err != nil || strings.Join(o.Addrs, ",") != "[::1]:7001,[::1]:7002,[::1]:7003" ||
		m["REDIS_HOST"] != "::1" || m["REDIS_URL"] != "redis://[::1]:7001" {
		t.Errorf("IPv6 env %v: ParseClusterURL %v", m, err)
	}

	if _, errOut, code := run(t, "env", "-f", path, "--format", "yaml"); code != 2 || !strings.Contains(errOut, "shell, dotenv, json, github") {
		t.Errorf("--format yaml: exit %d %q", code, errOut)
	}
}

func TestEnvGitHub(t *testing.T) {
	path := writeSpecFile(t, "name: ci\nports: [7201, 7202, 7203]\n")
	ghEnv := filepath.Join(t.TempDir(), "github_env")
	if err := os.WriteFile(ghEnv, []byte("EARLIER=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GITHUB_ENV", ghEnv)
	out, errOut, code := run(t, "env", "-f", path, "--format", "github")
	if code != 0 || out != "" || !strings.Contains(errOut, "wrote 6 variables") {
		t.Fatalf("env --format github: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	b, _ := os.ReadFile(ghEnv)
	got := string(b)
	if !strings.HasPrefix(got, "EARLIER=1\nREDIS_CLUSTER_NODES=127.0.0.1:7201,127.0.0.1:7202,127.0.0.1:7203\n") ||
		!strings.Contains(got, "\nREDIS_CLUSTER_URL=redis://127.0.0.1:7201?addr=127.0.0.1:7202&addr=127.0.0.1:7203\n") {
		t.Errorf("GITHUB_ENV after append:\n%s", got)
	}
	// -q (before or after the command) silences the note.
	for _, args := range [][]string{{"-q", "env"}, {"env", "-q"}} {
		_, errOut, code := run(t, append(args, "-f", path, "--format", "github")...)
		if code != 0 || errOut != "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	t.Setenv("GITHUB_ENV", "")
	if _, errOut, code := run(t, "env", "-f", path, "--format", "github"); code != 2 || !strings.Contains(errOut, "GITHUB_ENV") {
		t.Errorf("without GITHUB_ENV: exit %d %q", code, errOut)
	}
}

// TestEnvQuotingAndMultiline checks the writers on values a spec may one
// day hold (passwords): quotes, dollars, spaces and line breaks.
func TestEnvQuotingAndMultiline(t *testing.T) {
	vars := []envVar{
		{Key: "PLAIN", Value: "redis://127.0.0.1:7001"},
		{Key: "TRICKY", Value: `it's "$HOME" ` + "`x` \\ ;&|"},
		{Key: "MULTI", Value: "line one\nline two", Secret: true},
	}
	var sh bytes.Buffer
	if err := writeShellEnv(&sh, vars); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("bash"); err == nil {
		b, err := exec.Command("bash", "-c", sh.String()+`printf '%s|' "$PLAIN" "$TRICKY" "$MULTI"`).Output()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, sh.String())
		}
		if want := vars[0].Value + "|" + vars[1].Value + "|" + vars[2].Value + "|"; string(b) != want {
			t.Errorf("eval gave %q, want %q", b, want)
		}
	}
	var dot bytes.Buffer
	if err := writeDotenv(&dot, vars); err != nil {
		t.Fatal(err)
	}
	wantDot := "PLAIN=redis://127.0.0.1:7001\n" +
		`TRICKY="it's \"\$HOME\" \` + "`x\\` \\\\ ;&|\"\n" +
		`MULTI="line one\nline two"` + "\n"
	if dot.String() != wantDot {
		t.Errorf("dotenv:\n%s\nwant:\n%s", dot.String(), wantDot)
	}

	ghEnv := filepath.Join(t.TempDir(), "env")
	var stdout bytes.Buffer
	if err := appendGitHubEnv(ghEnv, &stdout, vars); err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "::add-mask::line one\n::add-mask::line two\n" {
		t.Errorf("masks: %q", stdout.String())
	}
	b, _ := os.ReadFile(ghEnv)
	re := regexp.MustCompile(`(?s)^PLAIN=redis://127\.0\.0\.1:7001\nTRICKY=it's "\$HOME" ` + "`x`" + ` \\ ;&\|\nMULTI<<(ghadelimiter_[0-9a-f]{16})\nline one\nline two\n(ghadelimiter_[0-9a-f]{16})\n$`)
	m := re.FindStringSubmatch(string(b))
	if m == nil || m[1] != m[2] {
		t.Errorf("GITHUB_ENV content:\n%s", b)
	}
}

func TestInitWritesTheSeedSpec(t *testing.T) {
	seed, err := os.ReadFile("../../cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := initSpec("dev", "127.0.0.1", "", 0)
	if err != nil || got != string(seed) {
		t.Fatalf("init's default spec differs from the repository's cluster.yaml (err %v):\n%s", err, got)
	}

	dir := t.TempDir()
	t.Chdir(dir)
	out, errOut, code := run(t, "init")
	if code != 0 || out != "" || !strings.Contains(errOut, "Next: rcluster up") {
		t.Fatalf("init: exit %d, %q, %q", code, out, errOut)
	}
	b, _ := os.ReadFile("cluster.yaml")
	if string(b) != string(seed) {
		t.Errorf("written cluster.yaml differs from the seed")
	}
	// No overwrite without --force; the file is untouched.
	if err := os.WriteFile("cluster.yaml", []byte("name: mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := run(t, "init"); code != 2 || !strings.Contains(errOut, "already exists; use --force") {
		t.Errorf("init over an existing file: exit %d %q", code, errOut)
	}
	if b, _ := os.ReadFile("cluster.yaml"); string(b) != "name: mine\n" {
		t.Errorf("init without --force changed the file: %q", b)
	}
	if _, _, code := run(t, "init", "--force"); code != 0 {
		t.Errorf("init --force: exit %d", code)
	}
	if b, _ := os.ReadFile("cluster.yaml"); string(b) != string(seed) {
		t.Errorf("init --force did not rewrite the seed")
	}

	// A second cluster side by side: its own name, ports and state dir.
	if _, _, code := run(t, "init", "-f", "shop.yaml", "--name", "shop", "--ports", "7101-7106", "--replicas", "1"); code != 0 {
		t.Fatalf("init shop: exit %d", code)
	}
	s, err := spec.Load("shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "shop" || len(s.Ports) != 6 || s.Ports[0] != 7101 || s.Replicas != 1 || s.Dir != filepath.Join(dir, ".rcluster", "shop") {
		t.Errorf("shop spec = %+v", s)
	}
	// Replicas alone: enough default ports for 3 masters.
	out, _, code = run(t, "init", "-f", "-", "--replicas", "2")
	if code != 0 || !strings.Contains(out, "ports: [7001, 7002, 7003, 7004, 7005, 7006, 7007, 7008, 7009]\n") {
		t.Errorf("init -f - --replicas 2: exit %d\n%s", code, out)
	}
	// Invalid choices are spec errors (exit 2) and write nothing.
	if _, errOut, code := run(t, "init", "-f", "bad.yaml", "--ports", "7001,7002"); code != 2 || !strings.Contains(errOut, "at least 3") {
		t.Errorf("init with 2 ports: exit %d %q", code, errOut)
	}
	if _, err := os.Stat("bad.yaml"); !os.IsNotExist(err) {
		t.Errorf("a rejected init wrote bad.yaml")
	}
}

func TestJUnitReport(t *testing.T) {
	rep := verify.Report{OK: false, Checks: []verify.Result{
		{Name: "nodes reachable", OK: true, Duration: 1500 * time.Microsecond},
		{Name: "slots covered", OK: false, Duration: 2 * time.Second, Detail: `slot 0 has no owner <&"'>`},
		{Name: "no detail", OK: false},
	}}
	path := filepath.Join(t.TempDir(), "junit.xml")
	started := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	if err := writeJUnitFile(path, rep, started); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(b), `<?xml version="1.0" encoding="UTF-8"?>`) {
		t.Errorf("no XML header:\n%s", b)
	}
	var doc junitSuites
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("junit XML does not parse: %v\n%s", err, b)
	}
	if len(doc.Suites) != 1 {
		t.Fatalf("suites: %d", len(doc.Suites))
	}
	s := doc.Suites[0]
	if s.Name != "rcluster.verify" || s.Tests != 3 || s.Failures != 2 || s.Time != "2.002" || s.Timestamp != "2024-05-06T07:08:09" {
		t.Errorf("suite = %+v", s)
	}
	c := s.Cases
	if c[0].Name != "nodes reachable" || c[0].Time != "0.002" || c[0].Failure != nil || c[0].Classname != "rcluster.verify" {
		t.Errorf("case 0 = %+v", c[0])
	}
	if c[1].Failure == nil || c[1].Failure.Message != `slot 0 has no owner <&"'>` || c[1].Time != "2.000" {
		t.Errorf("case 1 = %+v", c[1])
	}
	if c[2].Failure == nil || c[2].Failure.Message != "check failed" {
		t.Errorf("case 2 = %+v", c[2])
	}
}

func TestLsReadsStateDirs(t *testing.T) {
	root := t.TempDir()
	mk := func(rel, data string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Formed once, now stopped (no pidfiles).
	mk("shop/rcluster-state.json", `{"name":"shop","host":"127.0.0.1","ports":[7101,7102,7103,7104,7105,7106],"replicas":1}`)
	// Configs written, up never completed.
	mk("half/conf/redis_7203.conf", "port 7203\nbind 127.0.0.2 -::1\n")
	mk("half/conf/redis_7201.conf", "port 7201\nbind 127.0.0.2\n")
	// A pidfile naming a live process that is not redis: not running.
	mk("half/run/redis_7201.pid", "1\n")
	// Not clusters.
	mk("junk/readme.txt", "x")
	mk("file.txt", "x")

	out, errOut, code := run(t, "ls", "--root", root, "--json")
	if code != 0 {
		t.Fatalf("ls: exit %d %s", code, errOut)
	}
	var got struct {
		Root     string          `json:"root"`
		Clusters []listedCluster `json:"clusters"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}
	want := []listedCluster{
		{Name: "half", Dir: filepath.Join(root, "half"), Runtime: "process", Host: "127.0.0.2", Ports: []int{7201, 7203}, State: "stopped",
			Nodes: 2, Detail: "never formed (up did not complete)"},
		{Name: "shop", Dir: filepath.Join(root, "shop"), Runtime: "process", Host: "127.0.0.1", Ports: []int{7101, 7102, 7103, 7104, 7105, 7106},
			State: "stopped", Nodes: 6, Formed: true, Replicas: 1},
	}
	if got.Root != root || !reflect.DeepEqual(got.Clusters, want) {
		t.Errorf("ls --json = %+v\nwant %+v", got, want)
	}

	out, _, _ = run(t, "ls", "--root", root)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") ||
		!regexp.MustCompile(`^half\s+stopped\s+0/2\s+-\s+127\.0\.0\.2:7201,7203\s`).MatchString(lines[1]) ||
		!regexp.MustCompile(`^shop\s+stopped\s+0/6\s+3\s+127\.0\.0\.1:7101-7106\s`).MatchString(lines[2]) {
		t.Errorf("ls table:\n%s", out)
	}

	// An empty or missing root lists nothing, successfully.
	out, errOut, code = run(t, "ls", "--root", filepath.Join(root, "nothing"))
	if code != 0 || out != "" || !strings.Contains(errOut, "No clusters under") {
		t.Errorf("ls on a missing root: exit %d %q %q", code, out, errOut)
	}
}

func TestVerbosity(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want int
	}{
		{nil, levelNormal}, {[]string{"-q"}, levelQuiet}, {[]string{"--quiet"}, levelQuiet},
		{[]string{"-v"}, levelVerbose}, {[]string{"--verbose"}, levelVerbose}, {[]string{"-v", "-q"}, levelQuiet},
	} {
		for _, before := range []bool{true, false} {
			args := append(append([]string{"app"}, tt.args...), "cmd")
			if !before {
				args = append([]string{"app", "cmd"}, tt.args...)
			}
			got := -99
			app := &cli.App{Name: "app", Flags: verbosityFlags(), Writer: io.Discard, ErrWriter: io.Discard,
				Commands: []*cli.Command{{Name: "cmd", Flags: verbosityFlags(),
					Action: func(c *cli.Context) error { got = verbosity(c); return nil }}}}
			if err := app.Run(args); err != nil {
				t.Fatalf("%v: %v", args, err)
			}
			if got != tt.want {
				t.Errorf("%v: verbosity %d, want %d", args, got, tt.want)
			}
		}
	}
	// Observable: -q silences env's note on stderr, before or after the command.
	path := writeSpecFile(t, "name: v\n")
	t.Setenv("GITHUB_ENV", filepath.Join(t.TempDir(), "env"))
	if _, errOut, _ := run(t, "env", "-f", path, "--format", "github"); errOut == "" {
		t.Error("env --format github printed no note")
	}
}

func TestRenderPrintsPlanAndConfigsWritingNothing(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("cluster.yaml", []byte("name: shop\nports: 7101-7106\nreplicas: 1\nconfig:\n  maxmemory: 100mb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := run(t, "render")
	if code != 0 {
		t.Fatalf("render: exit %d %s", code, errOut)
	}
	for _, re := range []string{
		`(?m)^# Slot plan: 3 masters, 1 replica each, state in ` + regexp.QuoteMeta(filepath.Join(dir, ".rcluster", "shop")) + `$`,
		`(?m)^master\s+127\.0\.0\.1:7101\s+0-5460\s+5461\s+1\s+-$`,
		`(?m)^master\s+127\.0\.0\.1:7102\s+5461-10922\s+5462\s+2\s+-$`,
		`(?m)^master\s+127\.0\.0\.1:7103\s+10923-16383\s+5461\s+3\s+-$`,
		`(?m)^replica\s+127\.0\.0\.1:710[4-6]\s+-\s+-\s+-\s+127\.0\.0\.1:710[1-3]$`,
		`(?m)^# ==> ` + regexp.QuoteMeta(filepath.Join(dir, ".rcluster", "shop", "conf", "redis_7106.conf")) + ` <==$`,
		`(?m)^port 7106$`, `(?m)^maxmemory 100mb$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("render output does not match %s:\n%s", re, out)
		}
	}
	if n := strings.Count(out, "\nreplica "); n != 3 {
		t.Errorf("%d replica lines, want 3", n)
	}
	if _, err := os.Stat(".rcluster"); !os.IsNotExist(err) {
		t.Errorf("render created state: %v", err)
	}

	plan, _, _ := run(t, "render", "--plan")
	if strings.Contains(plan, "port 7101") || !strings.Contains(plan, "10923-16383") {
		t.Errorf("render --plan:\n%s", plan)
	}
	conf, _, code := run(t, "render", "--config", "7102")
	if code != 0 || !strings.HasPrefix(conf, "# Generated by rcluster") || !strings.Contains(conf, "\nport 7102\n") || strings.Contains(conf, "==>") {
		t.Errorf("render --config 7102: exit %d\n%s", code, conf)
	}
	if _, errOut, code := run(t, "render", "--config", "9999"); code != 2 || !strings.Contains(errOut, "7101-7106") {
		t.Errorf("render --config 9999: exit %d %q", code, errOut)
	}
	// A bad spec is a spec error.
	if err := os.WriteFile("bad.yaml", []byte("ports: [1, 2]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, code := run(t, "render", "-f", "bad.yaml"); code != 2 {
		t.Errorf("render of a bad spec: exit %d, want 2", code)
	}
}

func TestEnvWithAuthAndTLS(t *testing.T) {
	const pw = `s3cr'et $x&y`
	t.Setenv("ERGO_TEST_PW", pw)
	path := writeSpecFile(t, "name: sec\nauth:\n  password_env: ERGO_TEST_PW\ntls:\n  generate: true\n")
	out, errOut, code := run(t, "env", "-f", path, "--format", "json")
	if code != 0 {
		t.Fatalf("env: exit %d %s", code, errOut)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	tlsDir := filepath.Join(filepath.Dir(path), ".rcluster", "sec", "tls")
	if m["REDISCLI_AUTH"] != pw || m["REDIS_TLS_CA_FILE"] != filepath.Join(tlsDir, "ca.crt") ||
		m["REDIS_TLS_CERT_FILE"] != filepath.Join(tlsDir, "node.crt") || m["REDIS_TLS_KEY_FILE"] != filepath.Join(tlsDir, "node.key") ||
		!strings.HasPrefix(m["REDIS_URL"], "rediss://:") {
		t.Errorf("env with auth+tls: %v", m)
	}
	o, err := redis.ParseClusterURL(m["REDIS_CLUSTER_URL"])
	if err != nil || o.Password != pw || o.TLSConfig == nil || len(o.Addrs) != 3 {
		t.Errorf("ParseClusterURL(%s) = %+v, %v", m["REDIS_CLUSTER_URL"], o, err)
	}
	if so, err := redis.ParseURL(m["REDIS_URL"]); err != nil || so.Password != pw || so.Addr != "127.0.0.1:7001" {
		t.Errorf("ParseURL(%s) = %+v, %v", m["REDIS_URL"], so, err)
	}
	// GitHub: every value holding the password is masked first.
	ghEnv := filepath.Join(t.TempDir(), "env")
	t.Setenv("GITHUB_ENV", ghEnv)
	out, _, code = run(t, "env", "-f", path, "--format", "github")
	masks := strings.Count(out, "::add-mask::")
	if code != 0 || masks != 3 || !strings.Contains(out, "::add-mask::"+pw+"\n") {
		t.Errorf("github masks (%d):\n%s", masks, out)
	}
	// Without auth or tls none of these appear.
	out, _, _ = run(t, "env", "-f", writeSpecFile(t, "name: plain\n"))
	if strings.Contains(out, "REDISCLI_AUTH") || strings.Contains(out, "REDIS_TLS") || strings.Contains(out, "rediss") {
		t.Errorf("plain spec env:\n%s", out)
	}
}

func TestRenderRedactsPasswords(t *testing.T) {
	const admin, app = `Adm1n "pass" word`, `app\secret`
	t.Setenv("ERGO_ADMIN_PW", admin)
	t.Setenv("ERGO_APP_PW", app)
	path := writeSpecFile(t, "name: sec\nauth:\n  password_env: ERGO_ADMIN_PW\n  users:\n    - name: app\n      password_env: ERGO_APP_PW\n      rules: \"~app:* +@all\"\n")
	out, errOut, code := run(t, "render", "-f", path)
	if code != 0 {
		t.Fatalf("render: exit %d %s", code, errOut)
	}
	for _, leak := range []string{"Adm1n", `app\\secret`, `app\secret`} {
		if strings.Contains(out, leak) {
			t.Errorf("render output contains %q", leak)
		}
	}
	for _, want := range []string{"\nrequirepass [redacted]\n", "\nmasterauth [redacted]\n", ">[redacted]"} {
		if !strings.Contains(out, want) {
			t.Errorf("render output lacks %q", want)
		}
	}
	conf, _, _ := run(t, "render", "-f", path, "--config", "7001")
	if strings.Contains(conf, "Adm1n") || !strings.Contains(conf, "requirepass [redacted]") {
		t.Errorf("render --config leaks or lacks the redaction:\n%s", conf)
	}
	shown, _, _ := run(t, "render", "-f", path, "--config", "7001", "--show-secrets")
	if !strings.Contains(shown, `requirepass "Adm1n \"pass\" word"`) || !strings.Contains(shown, `">app\\secret"`) {
		t.Errorf("render --show-secrets:\n%s", shown)
	}
}
