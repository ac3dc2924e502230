package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

// rclusterRaw runs the binary like rcluster does, but with exactly the
// environment given on top of a minimal one (NO_COLOR is NOT set unless
// env sets it) and optional stdin.
func rclusterRaw(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	base := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TERM=xterm-256color"}
	return runBinary(t, dir, append(base, env...), nil, args...)
}

// initCluster writes <dir>/<name>.yaml with `rcluster init` for n nodes on
// a free port block (state in <dir>/.rcluster/<name>) and registers
// `down --purge` for cleanup.
func initCluster(t *testing.T, dir, name string, n, replicas int) (string, int) {
	t.Helper()
	redistest.RequireBinary(t, "redis-server")
	base := redistest.PortBlock(t, n)
	file := name + ".yaml"
	mustRun(t, dir, "init", "-f", file, "--name", name, "--ports", fmt.Sprintf("%d-%d", base, base+n-1),
		"--replicas", fmt.Sprint(replicas))
	t.Cleanup(func() {
		if r := rcluster(t, dir, "down", "--purge", "-f", file); r.code != 0 {
			t.Errorf("cleanup: down --purge -f %s: exit %d: %s", file, r.code, r.stderr)
		}
	})
	return file, base
}

func noEscapes(t *testing.T, what, s string) {
	t.Helper()
	if strings.ContainsAny(s, "\x1b\r") {
		t.Errorf("%s has escape codes or carriage returns though piped: %q", what, s)
	}
}

func TestHelpVersionSuggestionsCompletion(t *testing.T) {
	dir := t.TempDir()
	r := mustRun(t, dir, "--version")
	if !regexp.MustCompile(`^rcluster \S+`).MatchString(r.stdout) {
		t.Errorf("--version: %q", r.stdout)
	}
	r = rcluster(t, dir, "stauts")
	if r.code != 2 || !strings.Contains(r.stderr, `Did you mean "status"?`) {
		t.Errorf("rcluster stauts: exit %d, %q", r.code, r.stderr)
	}
	for _, cmd := range []string{"up", "down", "status", "verify", "env", "init", "render", "ls", "completion"} {
		r := mustRun(t, dir, cmd, "--help")
		if !strings.Contains(r.stdout, "Example") {
			t.Errorf("%s --help has no example:\n%s", cmd, r.stdout)
		}
	}

	// Bash completion through the script, asking the real binary.
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	script := mustRun(t, dir, "completion", "bash").stdout
	if err := os.WriteFile(filepath.Join(dir, "rcluster.bash"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	complete := func(line string) string {
		t.Helper()
		prog := `source ./rcluster.bash
read -ra COMP_WORDS <<<"$LINE"; [[ "$LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _rcluster_complete; echo "${COMPREPLY[*]}"`
		cmd := exec.Command("bash", "-c", prog)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(binary)+":"+os.Getenv("PATH"), "LINE="+line)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("complete %q: %v", line, err)
		}
		return strings.TrimSpace(string(out))
	}
	for line, want := range map[string]string{
		"rcluster st":            "status",
		"rcluster ver":           "verify",
		"rcluster verify --ju":   "--junit",
		"rcluster env --fo":      "--format",
		"rcluster completion zs": "zsh",
		"rcluster up --":         "--file --timeout --retain --dry-run --quiet --verbose --help",
		"rcluster up -- ":        "", // never runs `up`
		"rcluster up -f ":        "", // files
	} {
		if got := complete(line); got != want {
			t.Errorf("completing %q: %q, want %q", line, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".rcluster")); !os.IsNotExist(err) {
		t.Errorf("completion ran a command that created state: %v", err)
	}
}

// TestCIRecipe is docs/ci.md's job, step by step: up, export the env, use
// it from a shell and from go-redis, verify with a JUnit report, down.
func TestCIRecipe(t *testing.T) {
	redistest.Integration(t)
	dir := t.TempDir()
	file, base := initCluster(t, dir, "ci", 6, 1)
	spec := "RCLUSTER_FILE=" + file

	// Piped, NO_COLOR unset: plain lines only.
	up := rclusterRaw(t, dir, []string{spec}, "up")
	if up.code != 0 {
		t.Fatalf("up: exit %d", up.code)
	}
	noEscapes(t, "up", up.stderr)
	if !strings.Contains(up.stderr, "✓ Forming the cluster") {
		t.Errorf("up printed no step lines:\n%s", up.stderr)
	}

	// eval "$(rcluster env)" in a shell.
	envOut := rclusterRaw(t, dir, []string{spec}, "env")
	if envOut.code != 0 {
		t.Fatalf("env: exit %d", envOut.code)
	}
	sh := exec.Command("bash", "-c", `eval "$(rcluster env)"; echo "$REDIS_CLUSTER_NODES"; echo "$REDIS_CLUSTER_URL"; echo "$RCLUSTER_FILE"`)
	sh.Dir = dir
	sh.Env = append(os.Environ(), "PATH="+filepath.Dir(binary)+":"+os.Getenv("PATH"), spec)
	b, err := sh.Output()
	if err != nil {
		t.Fatalf(`bash eval "$(rcluster env)": %v`, err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var want []string
	for p := base; p < base+6; p++ {
		want = append(want, addr(p))
	}
	if len(lines) != 3 || lines[0] != strings.Join(want, ",") || lines[2] != filepath.Join(dir, file) {
		t.Fatalf("after eval: %q, want nodes %s", lines, strings.Join(want, ","))
	}

	// go-redis takes the exported cluster URL as is, and the cluster works.
	opt, err := redis.ParseClusterURL(lines[1])
	if err != nil {
		t.Fatalf("ParseClusterURL(%s): %v", lines[1], err)
	}
	if strings.Join(opt.Addrs, ",") != lines[0] {
		t.Errorf("ParseClusterURL addrs %v, want %s", opt.Addrs, lines[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := redis.NewClusterClient(opt)
	defer rdb.Close()
	for i := range 50 {
		if err := rdb.Set(ctx, fmt.Sprintf("ci:%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET through the exported URL: %v", err)
		}
	}
	// redis-cli with the exported seed.
	if cli, err := exec.LookPath("redis-cli"); err == nil {
		c := exec.Command("bash", "-c", `eval "$(rcluster env)"; "$REDIS_CLI" -c -u "$REDIS_URL" GET ci:7`)
		c.Dir = dir
		c.Env = append(os.Environ(), "PATH="+filepath.Dir(binary)+":"+os.Getenv("PATH"), spec, "REDIS_CLI="+cli)
		if out, err := c.Output(); err != nil || strings.TrimSpace(string(out)) != "7" {
			t.Errorf("redis-cli -u $REDIS_URL GET ci:7 = %q, %v", out, err)
		}
	}

	// --format github: later steps get the same variables.
	ghEnv := filepath.Join(dir, "github_env")
	if r := rclusterRaw(t, dir, []string{spec, "GITHUB_ENV=" + ghEnv}, "env", "--format", "github"); r.code != 0 {
		t.Fatalf("env --format github: exit %d", r.code)
	}
	gh, _ := os.ReadFile(ghEnv)
	if !strings.Contains(string(gh), "REDIS_CLUSTER_NODES="+lines[0]+"\n") || !strings.Contains(string(gh), "REDIS_CLUSTER_URL="+lines[1]+"\n") {
		t.Errorf("GITHUB_ENV:\n%s", gh)
	}

	// status --json parses.
	st := rclusterRaw(t, dir, []string{spec}, "status", "--json")
	var status struct {
		Name  string `json:"name"`
		Nodes []struct {
			Running bool   `json:"running"`
			Role    string `json:"role"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(st.stdout), &status); err != nil || status.Name != "ci" || len(status.Nodes) != 6 {
		t.Fatalf("status --json: %v %+v", err, status)
	}

	// verify --junit: one passing testcase per check; --json on the side.
	junit := filepath.Join(dir, "verify.xml")
	v := rclusterRaw(t, dir, []string{spec}, "verify", "--junit", junit, "--json")
	if v.code != 0 {
		t.Fatalf("verify: exit %d", v.code)
	}
	noEscapes(t, "verify", v.stderr)
	var rep struct {
		OK     bool `json:"ok"`
		Checks []struct {
			Name string `json:"name"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(v.stdout), &rep); err != nil || !rep.OK {
		t.Fatalf("verify --json: %v ok=%v", err, rep.OK)
	}
	suite := readJUnit(t, junit)
	if suite.Name != "rcluster.verify" || suite.Tests != len(rep.Checks) || suite.Failures != 0 || len(suite.Cases) != len(rep.Checks) {
		t.Errorf("junit suite %s: %d tests, %d failures, %d cases; JSON has %d checks",
			suite.Name, suite.Tests, suite.Failures, len(suite.Cases), len(rep.Checks))
	}
	for i, c := range suite.Cases {
		if c.Name != rep.Checks[i].Name || c.Failure != nil || !regexp.MustCompile(`^\d+\.\d{3}$`).MatchString(c.Time) {
			t.Errorf("testcase %d = %+v (check %q)", i, c, rep.Checks[i].Name)
		}
	}

	// Levels: -q prints nothing on success, -v adds the detail lines.
	if r := rclusterRaw(t, dir, []string{spec}, "verify", "-q"); r.code != 0 || r.stderr != "" {
		t.Errorf("verify -q: exit %d, stderr %q", r.code, r.stderr)
	}
	down := rclusterRaw(t, dir, []string{spec}, "-v", "down")
	if down.code != 0 || !regexp.MustCompile(`127\.0\.0\.1:\d+: shutdown \(pid \d+\)`).MatchString(down.stderr) {
		t.Errorf("-v down: exit %d, no per-node detail:\n%s", down.code, down.stderr)
	}
	noEscapes(t, "down", down.stderr)
	if r := rclusterRaw(t, dir, []string{spec}, "up", "-q"); r.code != 0 || r.stderr != "" {
		t.Errorf("up -q: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := rclusterRaw(t, dir, []string{spec}, "down"); r.code != 0 || strings.Contains(r.stderr, "shutdown (pid") {
		t.Errorf("down without -v printed per-node detail:\n%s", r.stderr)
	}
}

type junitCase struct {
	Name    string `xml:"name,attr"`
	Time    string `xml:"time,attr"`
	Failure *struct {
		Message string `xml:"message,attr"`
	} `xml:"failure"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Cases    []junitCase `xml:"testcase"`
}

func readJUnit(t *testing.T, path string) junitSuite {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("junit report: %v", err)
	}
	var doc struct {
		Suites []junitSuite `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil || len(doc.Suites) != 1 {
		t.Fatalf("junit report does not parse as one suite: %v\n%s", err, b)
	}
	return doc.Suites[0]
}

func TestVerifyJUnitOnFailure(t *testing.T) {
	redistest.Integration(t)
	base := redistest.PortBlock(t, 1)
	dir := t.TempDir()
	junit := filepath.Join(dir, "out.xml")
	r := rcluster(t, dir, "verify", "--addr", addr(base), "--junit", junit)
	if r.code != 1 {
		t.Fatalf("verify against nothing: exit %d, want 1", r.code)
	}
	s := readJUnit(t, junit)
	if s.Failures == 0 || len(s.Cases) == 0 || s.Cases[0].Failure == nil || !strings.Contains(s.Cases[0].Failure.Message, addr(base)) {
		t.Errorf("junit on failure: %+v", s)
	}
}

// TestClustersSideBySide runs two clusters from one directory (distinct
// names and port blocks, one state root) and lists them with ls.
func TestClustersSideBySide(t *testing.T) {
	redistest.Integration(t)
	dir := t.TempDir()
	fileA, baseA := initCluster(t, dir, "alpha", 3, 0)
	fileB, baseB := initCluster(t, dir, "beta", 3, 0)
	mustRun(t, dir, "up", "-f", fileA)
	mustRun(t, dir, "up", "-f", fileB)
	mustRun(t, dir, "verify", "-f", fileA)
	mustRun(t, dir, "verify", "-f", fileB)

	type listed struct {
		Name    string `json:"name"`
		State   string `json:"state"`
		Running int    `json:"running"`
		Ports   []int  `json:"ports"`
		Formed  bool   `json:"formed"`
	}
	ls := func() map[string]listed {
		t.Helper()
		r := mustRun(t, dir, "ls", "--json")
		var out struct {
			Clusters []listed `json:"clusters"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("ls --json: %v", err)
		}
		m := map[string]listed{}
		for _, c := range out.Clusters {
			m[c.Name] = c
		}
		return m
	}
	got := ls()
	if len(got) != 2 || got["alpha"].State != "running" || got["beta"].State != "running" ||
		got["alpha"].Ports[0] != baseA || got["beta"].Ports[0] != baseB || !got["alpha"].Formed {
		t.Fatalf("ls with both up: %+v", got)
	}
	table := mustRun(t, dir, "ls").stdout
	if !regexp.MustCompile(fmt.Sprintf(`(?m)^alpha\s+running\s+3/3\s+3\s+127\.0\.0\.1:%d-%d\s`, baseA, baseA+2)).MatchString(table) {
		t.Errorf("ls table:\n%s", table)
	}
	noEscapes(t, "ls", table)

	// One node of beta stops: partial. alpha is untouched.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: addr(baseB + 2)})
	_ = c.Shutdown(ctx).Err() // the connection drops as it exits
	c.Close()
	// Poll (short backoff, bounded by ctx) until the process has exited.
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		if got = ls(); got["beta"].State == "partial" || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
	if got["beta"].State != "partial" || got["beta"].Running != 2 || got["alpha"].State != "running" {
		t.Errorf("ls after stopping one beta node: %+v", got)
	}

	mustRun(t, dir, "down", "-f", fileA)
	got = ls()
	if got["alpha"].State != "stopped" || got["beta"].State != "partial" {
		t.Errorf("ls after down alpha: %+v", got)
	}
}

// TestEnvWithAuth: with auth: in the spec, the exported variables carry the
// password: redis-cli picks up REDISCLI_AUTH, go-redis the URL's, and
// `verify --addr` (no spec) authenticates from the environment.
func TestEnvWithAuth(t *testing.T) {
	redistest.Integration(t)
	cli := redistest.RequireBinary(t, "redis-cli")
	const pw = `p@ss word'$1`
	// Set before initCluster: its cleanup (down --purge) needs it too, and
	// cleanups run in reverse order.
	t.Setenv("ERGO_E2E_PW", pw)
	dir := t.TempDir()
	file, base := initCluster(t, dir, "sec", 3, 0)
	f, err := os.OpenFile(filepath.Join(dir, file), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("auth:\n  password_env: ERGO_E2E_PW\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	env := []string{"RCLUSTER_FILE=" + file, "ERGO_E2E_PW=" + pw}
	if r := rclusterRaw(t, dir, env, "up"); r.code != 0 {
		t.Fatalf("up: exit %d", r.code)
	}
	if strings.Contains(rclusterRaw(t, dir, env, "env", "--format", "dotenv").stderr, pw) {
		t.Error("env printed the password on stderr")
	}
	sh := exec.Command("bash", "-c", `eval "$(rcluster env)"
"$REDIS_CLI" -c -h "$REDIS_HOST" -p "$REDIS_PORT" SET e2e:auth ok >/dev/null &&
"$REDIS_CLI" -c -h "$REDIS_HOST" -p "$REDIS_PORT" GET e2e:auth &&
echo "$REDIS_CLUSTER_URL" &&
env -u RCLUSTER_FILE rcluster verify -q --addr "$REDIS_HOST:$REDIS_PORT"`)
	sh.Dir = dir
	sh.Env = append(os.Environ(), "PATH="+filepath.Dir(binary)+":"+os.Getenv("PATH"), "REDIS_CLI="+cli, "NO_COLOR=1")
	sh.Env = append(sh.Env, env...)
	var stderr bytes.Buffer
	sh.Stderr = &stderr
	out, err := sh.Output()
	if err != nil {
		t.Fatalf("shell with the exported env: %v\n%s%s", err, out, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || lines[0] != "ok" {
		t.Fatalf("redis-cli through REDISCLI_AUTH: %q", out)
	}
	opt, err := redis.ParseClusterURL(lines[1])
	if err != nil || opt.Password != pw || len(opt.Addrs) != 3 || opt.Addrs[0] != addr(base) {
		t.Fatalf("ParseClusterURL: %+v, %v", opt, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb := redis.NewClusterClient(opt)
	defer rdb.Close()
	if v, err := rdb.Get(ctx, "e2e:auth").Result(); err != nil || v != "ok" {
		t.Errorf("go-redis with the exported URL: %q, %v", v, err)
	}
	if r := rclusterRaw(t, dir, env, "down"); r.code != 0 {
		t.Errorf("down: exit %d", r.code)
	}
}
