package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
	"github.com/rcluster/rcluster/internal/tlsgen"
)

// rclusterEnv is rcluster with extra environment variables ("NAME=value")
// set on the command only: the test process itself never holds them.
func rclusterEnv(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	return rclusterWatch(t, dir, env, nil, args...)
}

// rclusterWatch runs rcluster with extra env and, while it runs, fails the
// test when any process on the machine shows one of secrets in its command
// line, or any process but rcluster itself shows one in its environment
// (redis-server children must not inherit the password variables).
// rcluster's own environment holds them by design, and so does a child in
// the instant between fork and exec, still running rcluster's image.
func rclusterWatch(t *testing.T, dir string, env, secrets []string, args ...string) result {
	t.Helper()
	var during func()
	if len(secrets) > 0 {
		during = func() {
			if len(secrets) == 0 {
				return
			}
			if leak := procLeak(secrets, binary); leak != "" {
				t.Errorf("while rcluster %s ran: %s", strings.Join(args, " "), leak)
				secrets = nil // report once
			}
		}
	}
	return runBinary(t, dir, append(append(os.Environ(), "NO_COLOR=1"), env...), during, args...)
}

func mustRunEnv(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	r := rclusterEnv(t, dir, env, args...)
	if r.code != 0 {
		t.Fatalf("rcluster %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// procLeak scans every process's command line, and the environment of
// every process not running the executable envOK, for the secrets; it
// describes the first hit or returns "". Processes that vanish or cannot be
// read are skipped.
func procLeak(secrets []string, envOK string) string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return ""
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		files := map[string][]byte{"cmdline": cmdline}
		if exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); envOK == "" || exe != envOK {
			files["environ"], _ = os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		}
		for what, b := range files {
			for _, s := range secrets {
				if bytes.Contains(b, []byte(s)) {
					return fmt.Sprintf("pid %d (%s) has a password in its %s",
						pid, strings.TrimSpace(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))), what)
				}
			}
		}
	}
	return ""
}

// writeSecureSpec is writeSpec for specs that read secrets from env: its
// cleanup (down --purge) gets env too.
func writeSecureSpec(t *testing.T, n, replicas int, extra string, env []string) (string, []int) {
	t.Helper()
	redistest.RequireBinary(t, "redis-server")
	base := redistest.PortBlock(t, n)
	dir := t.TempDir()
	yaml := fmt.Sprintf("name: e2e-secure\nhost: 127.0.0.1\nports: \"%d-%d\"\nreplicas: %d\ndir: ./state\n%s",
		base, base+n-1, replicas, extra)
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if r := rclusterEnv(t, dir, env, "down", "--purge"); r.code != 0 {
			t.Errorf("cleanup: down --purge exit %d: %s", r.code, r.stderr)
		}
	})
	ports := make([]int, n)
	for i := range ports {
		ports[i] = base + i
	}
	return dir, ports
}

// redisCLI runs the reference client with extra env; it returns the
// combined output and whether it exited 0.
func redisCLI(t *testing.T, env []string, args ...string) (string, bool) {
	t.Helper()
	cli := redistest.RequireBinary(t, "redis-cli")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

// requireCheckOK asserts a clean `redis-cli --cluster check` report.
func requireCheckOK(t *testing.T, out string, ok bool) {
	t.Helper()
	if !ok {
		t.Fatalf("redis-cli --cluster check failed:\n%s", out)
	}
	for _, want := range []string{"[OK] All nodes agree about slots configuration.", "[OK] All 16384 slots covered."} {
		if !strings.Contains(out, want) {
			t.Fatalf("redis-cli --cluster check lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "[WARNING]") || strings.Contains(out, "[ERR]") {
		t.Fatalf("redis-cli --cluster check warns:\n%s", out)
	}
}

func randomSecret(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// secretFiles walks root and returns the files (relative paths) holding any
// of the secrets, failing the test for every such file that is not 0600.
func secretFiles(t *testing.T, root string, secrets ...string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				rel, _ := filepath.Rel(root, path)
				hits = append(hits, rel)
				if info, err := d.Info(); err != nil || info.Mode().Perm() != 0o600 {
					t.Errorf("%s holds a password but is not 0600 (%v)", rel, info.Mode())
				}
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s: %v", root, err)
	}
	return hits
}

func TestAuthPasswordEnvAndACLUser(t *testing.T) {
	redistest.Integration(t)
	pw, appPW := randomSecret(t, "adm-"), randomSecret(t, "app-")
	env := []string{"RCLUSTER_E2E_PW=" + pw, "RCLUSTER_E2E_APP_PW=" + appPW}
	secrets := []string{pw, appPW}
	dir, ports := writeSecureSpec(t, 6, 1, `auth:
  password_env: RCLUSTER_E2E_PW
  users:
    - name: app
      password_env: RCLUSTER_E2E_APP_PW
      rules: "~app:* +@all"
`, env)
	state := filepath.Join(dir, "state")
	noSecret := func(what, s string) {
		t.Helper()
		for _, sec := range secrets {
			if strings.Contains(s, sec) {
				t.Errorf("%s shows a password:\n%s", what, s)
			}
		}
	}
	run := func(args ...string) result {
		t.Helper()
		r := rclusterWatch(t, dir, env, secrets, args...)
		if r.code != 0 {
			t.Fatalf("rcluster %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
		noSecret("rcluster "+strings.Join(args, " "), r.stdout+r.stderr)
		return r
	}

	// Without the variable the spec is refused, naming the variable only.
	r := rcluster(t, dir, "up")
	if r.code != 2 || !strings.Contains(r.stderr, "RCLUSTER_E2E_PW") {
		t.Fatalf("up without $RCLUSTER_E2E_PW: exit %d, want 2 naming the variable:\n%s", r.code, r.stderr)
	}

	run("up")
	run("verify")
	st := run("status")
	if got := strings.Count(st.stdout, "replica"); got != 3 {
		t.Errorf("status shows %d replicas, want 3:\n%s", got, st.stdout)
	}
	run("status", "--json")
	if leak := procLeak(secrets, ""); leak != "" {
		t.Errorf("cluster running: %s", leak)
	}

	// The reference tool: REDISCLI_AUTH works, no password gets NOAUTH.
	out, ok := redisCLI(t, []string{"REDISCLI_AUTH=" + pw}, "--cluster", "check", addr(ports[0]))
	requireCheckOK(t, out, ok)
	if out, ok := redisCLI(t, nil, "--cluster", "check", addr(ports[0])); ok {
		t.Errorf("redis-cli --cluster check without a password passed:\n%s", out)
	}
	if out, _ := redisCLI(t, nil, "-c", "-p", strconv.Itoa(ports[0]), "set", "k", "v"); !strings.Contains(out, "NOAUTH") {
		t.Errorf("redis-cli without auth: %q, want NOAUTH", out)
	}

	// Data as the admin (default user), and the ACL user's key pattern.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addrs := make([]string, len(ports))
	for i, p := range ports {
		addrs[i] = addr(p)
	}
	admin := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Password: pw})
	const keys = 100
	for i := 0; i < keys; i++ {
		if err := admin.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatalf("admin set k%d: %v", i, err)
		}
	}
	admin.Close()
	app := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Username: "app", Password: appPW})
	if err := app.Set(ctx, "app:1", "x", 0).Err(); err != nil {
		t.Errorf("app user set app:1: %v", err)
	}
	if err := app.Set(ctx, "other:1", "x", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("app user set other:1: %v, want NOPERM", err)
	}
	app.Close()
	wrong := redis.NewClient(&redis.Options{Addr: addrs[0], Username: "app", Password: pw})
	if err := wrong.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("app user with the admin password: %v, want WRONGPASS", err)
	}
	wrong.Close()

	// On disk the passwords live only in the 0600 node configs.
	hits := secretFiles(t, state, secrets...)
	for _, h := range hits {
		if !strings.HasPrefix(h, "conf"+string(filepath.Separator)) || !strings.HasSuffix(h, ".conf") {
			t.Errorf("%s holds a password; only the node configs may", h)
		}
	}
	if len(hits) != len(ports) {
		t.Errorf("passwords found in %v, want exactly the %d node configs", hits, len(ports))
	}

	run("down")
	assertNothingLeft(t, ports)

	// Restart from nodes.conf: replicas re-link with masterauth.
	up := run("up")
	if !strings.Contains(up.stderr, "re-form from nodes.conf") {
		t.Errorf("second up did not restart from nodes.conf:\n%s", up.stderr)
	}
	run("verify") // includes "replica links up"
	js := run("status", "--json")
	var status struct {
		Nodes []struct {
			Addr, Role string
			Link       string `json:"link"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(js.stdout), &status); err != nil {
		t.Fatalf("status --json: %v", err)
	}
	for _, n := range status.Nodes {
		if n.Role == "replica" && n.Link != "up" {
			t.Errorf("after restart replica %s: master link %q", n.Addr, n.Link)
		}
	}
	admin = redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Password: pw})
	defer admin.Close()
	for i := 0; i < keys; i++ {
		if got, err := admin.Get(ctx, fmt.Sprintf("k%d", i)).Int(); err != nil || got != i {
			t.Fatalf("after restart k%d = %d, %v; want %d", i, got, err, i)
		}
	}
	for _, h := range secretFiles(t, state, secrets...) {
		if !strings.HasPrefix(h, "conf"+string(filepath.Separator)) {
			t.Errorf("after restart %s holds a password", h)
		}
	}

	run("down", "--purge")
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state dir still exists after down --purge: %v", err)
	}
	assertNothingLeft(t, ports)
}

func TestTLSGenerated(t *testing.T) {
	redistest.Integration(t)
	dir, ports := writeSpec(t, 6, 1, "tls:\n  generate: true\n")
	state := filepath.Join(dir, "state")
	tlsDir := filepath.Join(state, "tls")
	ca, cert, key := filepath.Join(tlsDir, "ca.crt"), filepath.Join(tlsDir, "node.crt"), filepath.Join(tlsDir, "node.key")
	tlsArgs := []string{"--tls", "--cacert", ca, "--cert", cert, "--key", key}

	mustRun(t, dir, "up")
	mustRun(t, dir, "verify")
	for path, want := range map[string]os.FileMode{tlsDir: 0o700 | fs.ModeDir, key: 0o600} {
		if info, err := os.Stat(path); err != nil || info.Mode() != want {
			t.Errorf("%s: %v %v, want mode %v", path, info.Mode(), err, want)
		}
	}

	out, ok := redisCLI(t, nil, append(tlsArgs, "--cluster", "check", addr(ports[0]))...)
	requireCheckOK(t, out, ok)
	if got := strings.Count(out, "S: "); got != 3 {
		t.Errorf("redis-cli check shows %d replicas, want 3:\n%s", got, out)
	}

	// Plain TCP and TLS without a client certificate are refused.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	plain := redis.NewClient(&redis.Options{Addr: addr(ports[0]), MaxRetries: -1, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second})
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Errorf("a plain TCP client got PONG from a TLS node")
	}
	plain.Close()
	if out, ok := redisCLI(t, nil, "-p", strconv.Itoa(ports[0]), "ping"); ok && strings.Contains(out, "PONG") {
		t.Errorf("plain redis-cli got PONG from a TLS node: %s", out)
	}
	if out, ok := redisCLI(t, nil, "--tls", "--cacert", ca, "-p", strconv.Itoa(ports[0]), "ping"); ok && strings.Contains(out, "PONG") {
		t.Errorf("redis-cli without a client certificate got PONG: %s", out)
	}

	// go-redis with the generated files, as docs/security.md shows.
	cfg, err := redisconn.TLSFiles{CACert: ca, Cert: cert, Key: key}.Config()
	if err != nil {
		t.Fatal(err)
	}
	addrs := make([]string, len(ports))
	for i, p := range ports {
		addrs[i] = addr(p)
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, TLSConfig: cfg})
	for i := 0; i < 50; i++ {
		if err := c.Set(ctx, fmt.Sprintf("t%d", i), i, 0).Err(); err != nil {
			t.Fatalf("TLS cluster client set t%d: %v", i, err)
		}
	}
	c.Close()

	t.Run("verify --addr with TLS flags", func(t *testing.T) {
		seed := addr(ports[1])
		r := mustRun(t, dir, append([]string{"verify", "--json", "--addr", seed}, tlsArgs...)...)
		var rep struct {
			OK     bool              `json:"ok"`
			Checks []json.RawMessage `json:"checks"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || !rep.OK || len(rep.Checks) < 10 {
			t.Errorf("verify --addr --tls: ok=%v, %d checks, %v", rep.OK, len(rep.Checks), err)
		}
		// --cacert etc. imply --tls; --sni names a name the certificate has.
		mustRun(t, dir, "verify", "--addr", seed, "--cacert", ca, "--cert", cert, "--key", key, "--sni", "localhost")

		for _, c := range []struct {
			name string
			args []string
			code int
			want string
		}{
			{"no TLS", nil, 1, seed},
			{"no client certificate", []string{"--tls", "--cacert", ca}, 1, seed},
			{"system roots", []string{"--tls", "--cert", cert, "--key", key}, 1, "certificate"},
			{"SNI not in the certificate", []string{"--cacert", ca, "--cert", cert, "--key", key, "--sni", "redis.example"}, 1, "redis.example"},
			{"cert without key", []string{"--tls", "--cacert", ca, "--cert", cert}, 2, "--cert and --key"},
			{"missing CA file", []string{"--tls", "--cacert", filepath.Join(dir, "nope.crt")}, 1, "nope.crt"},
		} {
			start := time.Now()
			r := rcluster(t, dir, append([]string{"verify", "--addr", seed, "--timeout", "1s"}, c.args...)...)
			if r.code != c.code || !strings.Contains(r.stderr, c.want) {
				t.Errorf("%s: exit %d, want %d with %q in:\n%s", c.name, r.code, c.code, c.want, r.stderr)
			}
			if el := time.Since(start); el > 15*time.Second {
				t.Errorf("%s: verify took %s", c.name, el)
			}
		}
	})

	// Restart: the nodes reuse the generated material.
	caBefore, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, dir, "down")
	mustRun(t, dir, "up")
	mustRun(t, dir, "verify")
	if caAfter, err := os.ReadFile(ca); err != nil || !bytes.Equal(caBefore, caAfter) {
		t.Errorf("restart replaced the CA (%v)", err)
	}

	mustRun(t, dir, "down", "--purge")
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state dir (with its TLS material) still exists after down --purge: %v", err)
	}
	assertNothingLeft(t, ports)
}

func TestAuthAndTLSWithGivenFiles(t *testing.T) {
	redistest.Integration(t)
	// The user's own material: a CA and node certificate in the spec's
	// directory, and the password in a file next to the spec.
	pw := randomSecret(t, "file-")
	dir, ports := writeSecureSpec(t, 3, 0, `auth:
  password_file: secrets/redis.pw
tls:
  ca_file: pki/ca.crt
  cert_file: pki/node.crt
  key_file: pki/node.key
`, nil)
	f, _, err := tlsgen.Ensure(filepath.Join(dir, "pki"), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets", "redis.pw"), []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsArgs := []string{"--tls", "--cacert", f.CA, "--cert", f.Cert, "--key", f.Key}

	up := rclusterWatch(t, dir, nil, []string{pw}, "up")
	if up.code != 0 {
		t.Fatalf("up: exit %d\n%s", up.code, up.stderr)
	}
	mustRun(t, dir, "verify")
	if _, err := os.Stat(filepath.Join(dir, "state", "tls")); !os.IsNotExist(err) {
		t.Errorf("given TLS files, yet rcluster generated material: %v", err)
	}

	out, ok := redisCLI(t, []string{"REDISCLI_AUTH=" + pw}, append(tlsArgs, "--cluster", "check", addr(ports[0]))...)
	requireCheckOK(t, out, ok)
	if out, _ := redisCLI(t, nil, append(tlsArgs, "-p", strconv.Itoa(ports[0]), "ping")...); !strings.Contains(out, "NOAUTH") {
		t.Errorf("TLS without a password: %q, want NOAUTH", out)
	}

	seed := addr(ports[2])
	r := rclusterEnv(t, dir, []string{"REDISCLI_AUTH=" + pw}, append([]string{"verify", "--addr", seed}, tlsArgs...)...)
	if r.code != 0 {
		t.Errorf("verify --addr --tls with REDISCLI_AUTH: exit %d\n%s", r.code, r.stderr)
	}
	if r := rcluster(t, dir, append([]string{"verify", "--addr", seed}, tlsArgs...)...); r.code != 1 || !strings.Contains(r.stderr, "NOAUTH") {
		t.Errorf("verify --addr --tls without a password: exit %d, want 1 saying NOAUTH\n%s", r.code, r.stderr)
	}
	for _, h := range secretFiles(t, filepath.Join(dir, "state"), pw) {
		if !strings.HasPrefix(h, "conf"+string(filepath.Separator)) {
			t.Errorf("%s holds the password", h)
		}
	}

	mustRun(t, dir, "down", "--purge")
	assertNothingLeft(t, ports)
	if _, err := os.Stat(f.CA); err != nil {
		t.Errorf("down --purge touched the user's CA outside the state dir: %v", err)
	}
}
