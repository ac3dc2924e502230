package confgen

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/tlsgen"
)

func parseEnv(t *testing.T, data, path string, env map[string]string) *spec.Spec {
	t.Helper()
	s, err := spec.ParseEnv([]byte(data), path, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("parse spec: %v", err)
	}
	return s
}

func TestGoldenAuth(t *testing.T) {
	s := parseEnv(t, `name: secure
dir: /srv/rcluster/secure
auth:
  password: 'Adm1n "pass" word'
  users:
    - name: app
      password_env: APP_PW
      rules: "~app:*  &app:* +@all -@dangerous"
    - name: reader
      password: r3ad
      rules: [~*, +@read, +ping]
config:
  hz: 20
`, "/srv/cluster.yaml", map[string]string{"APP_PW": `app\secret`})
	got := renderNode(t, s, 7001)
	golden(t, "auth", got)
	for key, n := range map[string]int{"requirepass": 1, "masterauth": 1, "user": 3, "port": 1} {
		if c := countDirective(got, key); c != n {
			t.Errorf("%s appears %d times, want %d", key, c, n)
		}
	}
	// Without users, no user lines: requirepass alone sets the default user.
	s.Auth.Users = nil
	if c := countDirective(renderNode(t, s, 7001), "user"); c != 0 {
		t.Errorf("without users: %d user lines", c)
	}
}

func TestGoldenTLSGenerated(t *testing.T) {
	s := parse(t, `name: tls
host: 127.0.0.2
dir: /srv/rcluster/tls
tls:
  generate: true
`, "/srv/cluster.yaml")
	got := renderNode(t, s, 7002)
	golden(t, "tls-generated", got)
	// The client port becomes TLS only: the template's port line says 0.
	if c := countDirective(got, "port"); c != 1 || !bytes.Contains(got, []byte("\nport 0\n")) {
		t.Errorf("want exactly one `port 0` line, got %d port lines", c)
	}
}

// TestGoldenSecurityCustomTemplate: given TLS files, optional client auth
// and auth on a custom template that sets port, requirepass and a user
// itself: rcluster's lines replace the template's in place.
func TestGoldenSecurityCustomTemplate(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "secure.tmpl")
	if err := os.WriteFile(tmpl, []byte(`# custom {{.Port}}
port {{.Port}}
requirepass from-template
user legacy on nopass ~* +@all
bind {{.Host}}
cluster-enabled yes
daemonize yes
user other on nopass ~* +@all
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := parse(t, `name: custom
dir: /srv/rcluster/custom
template: secure.tmpl
auth:
  password: pw
  users: [{name: app, password: apppw, rules: "~* +@all"}]
tls:
  cert_file: /etc/rcluster/node.crt
  key_file: "/etc/rcluster/my keys/node.key"
  ca_file: /etc/rcluster/ca.crt
  client_cert_file: /etc/rcluster/client.crt
  client_key_file: /etc/rcluster/client.key
  auth_clients: optional
`, filepath.Join(dir, "cluster.yaml"))
	got := renderNode(t, s, 7003)
	golden(t, "security-custom", got)
	if bytes.Contains(got, []byte("from-template")) || bytes.Contains(got, []byte("nopass")) {
		t.Errorf("template's own auth lines survived:\n%s", got)
	}
}

func TestWriteGeneratesTLS(t *testing.T) {
	s := parse(t, "tls: {generate: true}\n", "c.yaml")
	s.Dir = filepath.Join(t.TempDir(), "state")
	if _, err := Write(s); err != nil {
		t.Fatal(err)
	}
	f := s.TLSFiles()
	checkMode(t, s.TLSDir(), os.ModeDir|0o700)
	checkMode(t, f.Key, 0o600)
	if err := tlsgen.Check(tlsgen.In(s.TLSDir()), s.TLSHosts(), time.Now()); err != nil {
		t.Fatalf("generated material: %v", err)
	}
	cert, _ := os.ReadFile(f.Cert)
	// A second Write keeps the valid material (running nodes use it).
	if _, err := Write(s); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(f.Cert); !bytes.Equal(cert, again) {
		t.Error("Write replaced valid TLS material")
	}
	// ConnOptions works once Write has run.
	if o, err := s.ConnOptions(); err != nil || o.TLSConfig == nil {
		t.Errorf("ConnOptions after Write: %v, %v", o, err)
	}
}

func TestWriteChecksGivenTLSFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"node.crt", "node.key"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := parse(t, "dir: state\ntls: {cert_file: node.crt, key_file: node.key, ca_file: ca.crt}\n", filepath.Join(dir, "cluster.yaml"))
	_, err := Write(s)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "ca_file") || !strings.Contains(err.Error(), filepath.Join(dir, "ca.crt")) {
		t.Errorf("Write with a missing ca_file: err = %v, want ErrNotExist naming ca_file and the path", err)
	}
	if _, err := os.Stat(s.ConfDir()); err == nil {
		if entries, _ := os.ReadDir(s.ConfDir()); len(entries) != 0 {
			t.Errorf("configs written despite the missing TLS file: %d entries", len(entries))
		}
	}
}
