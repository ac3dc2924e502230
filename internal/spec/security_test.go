package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/tlsgen"
	"gopkg.in/yaml.v3"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func parseEnvErr(t *testing.T, data string, env map[string]string) []string {
	t.Helper()
	s, err := ParseEnv([]byte(data), "cluster.yaml", envOf(env))
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

func TestAuthSources(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("admin.pw", "file secret with spaces\n")
	write("crlf.pw", "crlf-secret\r\n\n")
	specPath := filepath.Join(dir, "cluster.yaml")
	s, err := ParseEnv([]byte(`auth:
  password_file: admin.pw
  users:
    - name: app
      password_env: APP_PW
      rules: "~app:* +@all"
    - name: ro
      password: 12345
      rules: [~*, +@read, -@dangerous]
    - name: crlf
      password_file: `+filepath.Join(dir, "crlf.pw")+`
      rules: "+ping"
`), specPath, envOf(map[string]string{"APP_PW": "env-secret"}))
	if err != nil {
		t.Fatal(err)
	}
	a := s.Auth
	if a == nil || a.Password.Reveal() != "file secret with spaces" || a.Source != "file "+filepath.Join(dir, "admin.pw") {
		t.Fatalf("auth = %+v (password %q)", a, a.Password.Reveal())
	}
	type user struct{ name, pw, src, rules string }
	var got []user
	for _, u := range a.Users {
		got = append(got, user{u.Name, u.Password.Reveal(), u.Source, u.Rules})
	}
	want := []user{
		{"app", "env-secret", "$APP_PW", "~app:* +@all"},
		{"ro", "12345", "auth.users[1].password", "~* +@read -@dangerous"},
		{"crlf", "crlf-secret", "file " + filepath.Join(dir, "crlf.pw"), "+ping"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("users = %+v\nwant %+v", got, want)
	}
	if names := s.SecretEnvNames(); !reflect.DeepEqual(names, []string{"APP_PW"}) {
		t.Errorf("SecretEnvNames = %v, want [APP_PW]", names)
	}
	env := s.ChildEnv([]string{"PATH=/usr/bin", "APP_PW=env-secret", "APP_PW_2=kept", "HOME=/root"})
	if !reflect.DeepEqual(env, []string{"PATH=/usr/bin", "APP_PW_2=kept", "HOME=/root"}) {
		t.Errorf("ChildEnv = %v", env)
	}
	if s := mustParse(t, "auth:\n  password: pw\n", "c.yaml"); s.Auth.Source != "auth.password" || s.Auth.Password.Reveal() != "pw" {
		t.Errorf("inline password: %+v", s.Auth)
	}
	if s := mustParse(t, "auth:\ntls:\n", "c.yaml"); s.Auth != nil || s.TLS != nil {
		t.Errorf("empty auth:/tls: should leave both off, got %+v %+v", s.Auth, s.TLS)
	}
}

func TestSecurityProblems(t *testing.T) {
	env := map[string]string{"SET": "x", "EMPTY": ""}
	tests := []struct {
		name, yaml string
		want       string
	}{
		{"auth not a mapping", "auth: hunter2\n",
			`cluster.yaml:1: auth: expected a mapping (password or password_env or password_file, and users), got "hunter2"`},
		{"auth unknown key", "auth:\n  pasword: x\n",
			`cluster.yaml:2: auth: unknown key "pasword" (did you mean "password"?)`},
		{"auth unknown key no suggestion", "auth:\n  password: x\n  colour: blue\n",
			`cluster.yaml:3: auth: unknown key "colour" (known keys: password, password_env, password_file, users)`},
		{"auth duplicate key", "auth:\n  password: x\n  password: y\n",
			`cluster.yaml:3: auth: duplicate key "password" (first set on line 2)`},
		{"two sources", "auth:\n  password: x\n  password_env: SET\n",
			`cluster.yaml:3: auth: give only one of password, password_env, password_file (found password and password_env)`},
		{"no password", "name: dev\nauth: {}\n",
			`cluster.yaml:2: auth: no password for the default user (set password, password_env or password_file)`},
		{"no password with users", "auth:\n  users:\n    - {name: app, password: x, rules: '+@all'}\n",
			`cluster.yaml:1: auth: no password for the default user (set password, password_env or password_file); ACL users need it too: it is rcluster's admin identity`},
		{"empty password", "auth:\n  password: \"\"\n",
			`cluster.yaml:2: auth: password: must not be empty`},
		{"password not scalar", "auth:\n  password: [a]\n",
			`cluster.yaml:2: auth: password: expected a string, got a list`},
		{"env unset", "auth:\n  password_env: NOPE\n",
			`cluster.yaml:2: auth: password_env: $NOPE is not set or empty`},
		{"env empty", "auth:\n  password_env: EMPTY\n",
			`cluster.yaml:2: auth: password_env: $EMPTY is not set or empty`},
		{"env bad name", "auth:\n  password_env: $SET\n",
			`cluster.yaml:2: auth: password_env: "$SET" is not an environment variable name`},
		{"file not a path", "auth:\n  password_file: 12\n",
			`cluster.yaml:2: auth: password_file: expected a file path, got 12`},
		{"users not a list", "auth:\n  password: x\n  users: app\n",
			`cluster.yaml:3: auth: users: expected a list of users (name, password, rules), got "app"`},
		{"user not a mapping", "auth:\n  password: x\n  users:\n    - app\n",
			`cluster.yaml:4: auth: users[0]: expected a mapping (name, password, rules), got "app"`},
		{"user unknown key", "auth:\n  password: x\n  users:\n    - name: app\n      password: y\n      rule: '+@all'\n",
			`cluster.yaml:6: auth: users[0]: unknown key "rule" (did you mean "rules"?)`},
		{"user without name", "auth:\n  password: x\n  users:\n    - password: y\n      rules: '+@all'\n",
			`cluster.yaml:4: auth: users[0]: name is missing`},
		{"user name not a string", "auth:\n  password: x\n  users:\n    - name: [a]\n      password: y\n      rules: '+@all'\n",
			`cluster.yaml:4: auth: users[0]: name: expected a string, got a list`},
		{"user default", "auth:\n  password: x\n  users:\n    - rules: '+@all'\n      name: default\n      password: y\n",
			`cluster.yaml:5: auth: users[0]: "default" is rcluster's admin identity: set its password with auth.password (or password_env, password_file)`},
		{"user name with space", "auth:\n  password: x\n  users:\n    - name: \"my app\"\n      password: y\n      rules: '+@all'\n",
			`cluster.yaml:4: auth: users[0]: name "my app" must be one word without quotes or backslashes`},
		{"duplicate user", "auth:\n  password: x\n  users:\n    - {name: app, password: y, rules: '+@all'}\n    - {name: app, password: z, rules: '+@read'}\n",
			`cluster.yaml:5: auth: users[1]: user "app" is already defined by users[0]`},
		{"user without password", "auth:\n  password: x\n  users:\n    - name: app\n      rules: '+@all'\n",
			`cluster.yaml:4: auth: users[0]: no password (set password, password_env or password_file)`},
		{"user two sources", "auth:\n  password: x\n  users:\n    - name: app\n      password_env: SET\n      password: y\n      rules: '+@all'\n",
			`cluster.yaml:6: auth: users[0]: give only one of password, password_env, password_file (found password and password_env)`},
		{"user env unset", "auth:\n  password: x\n  users:\n    - name: app\n      password_env: APP_PW\n      rules: '+@all'\n",
			`cluster.yaml:5: auth: users[0]: password_env: $APP_PW is not set or empty`},
		{"user without rules", "auth:\n  password: x\n  users:\n    - name: app\n      password: y\n",
			`cluster.yaml:4: auth: users[0]: rules are missing (e.g. "~* &* +@all" for full access, "~app:* +@read" for reads of app:* keys)`},
		{"rules not a string", "auth:\n  password: x\n  users:\n    - name: app\n      password: y\n      rules: {a: b}\n",
			`cluster.yaml:6: auth: users[0]: rules: expected ACL rules as a string like "~app:* +@all" or a list of them, got a mapping`},
		{"rules list item", "auth:\n  password: x\n  users:\n    - name: app\n      password: y\n      rules: [+@all, [x]]\n",
			`cluster.yaml:6: auth: users[0]: rules: list items must be strings, got a list`},
		{"password in rules", "auth:\n  password: x\n  users:\n    - name: app\n      password: y\n      rules: \"~* >leaked +@all\"\n",
			`cluster.yaml:6: auth: users[0]: rule ">..." is not allowed here: passwords come only from password, password_env or password_file`},
		{"nopass rule", "auth:\n  password: x\n  users:\n    - name: app\n      password: y\n      rules: \"NOPASS +@all\"\n",
			`cluster.yaml:6: auth: users[0]: rule "NOPASS" is not allowed here: passwords come only from password, password_env or password_file`},
		{"quote in rules", "auth:\n  password: x\n  users:\n    - name: app\n      password: y\n      rules: \"~'a' +@all\"\n",
			`cluster.yaml:6: auth: users[0]: rules must not contain quotes, backslashes or control characters`},
		{"tls not a mapping", "tls: true\n",
			`cluster.yaml:1: tls: expected a mapping (enabled, generate or cert_file/key_file/ca_file), got true`},
		{"tls unknown key", "tls:\n  generate: true\n  cert: a.crt\n",
			`cluster.yaml:3: tls: unknown key "cert" (did you mean "cert_file"?)`},
		{"tls unknown key no suggestion", "tls:\n  generate: true\n  client: a.crt\n",
			`cluster.yaml:3: tls: unknown key "client" (known keys: enabled, generate, cert_file, key_file, ca_file, client_cert_file, client_key_file, auth_clients)`},
		{"tls enabled not bool", "tls:\n  enabled: yes\n  generate: true\n",
			`cluster.yaml:2: tls: enabled: expected true or false, got "yes"`},
		{"tls generate not bool", "tls:\n  generate: 1\n",
			`cluster.yaml:2: tls: generate: expected true or false, got 1`},
		{"tls generate and files", "tls:\n  generate: true\n  cert_file: a.crt\n",
			`cluster.yaml:3: tls: cert_file cannot be combined with generate: true (rcluster makes its own CA and certificate)`},
		{"tls client cert alone", "tls:\n  cert_file: a\n  key_file: b\n  ca_file: c\n  client_cert_file: d\n",
			`cluster.yaml:5: tls: client_cert_file and client_key_file go together`},
		{"tls auth_clients", "tls:\n  generate: true\n  auth_clients: maybe\n",
			`cluster.yaml:3: tls: auth_clients: "maybe" must be yes, optional or no`},
		{"tls file not a string", "tls:\n  cert_file: [a]\n  key_file: b\n  ca_file: c\n",
			`cluster.yaml:2: tls: cert_file: expected a string, got a list`},
		{"config requirepass", "config:\n  requirepass: hunter2\n",
			`cluster.yaml:2: config: "requirepass" cannot be set here: set auth.password (or password_env, password_file) instead`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseEnvErr(t, tt.yaml, env)
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), tt.want)
			}
		})
	}
}

func TestTLSMissingFilesAllReported(t *testing.T) {
	got := parseErr(t, "name: dev\ntls:\n  enabled: true\n")
	want := []string{
		`cluster.yaml:2: tls: cert_file is required (or set generate: true for a throwaway CA and certificate)`,
		`cluster.yaml:2: tls: key_file is required (or set generate: true for a throwaway CA and certificate)`,
		`cluster.yaml:2: tls: ca_file is required (or set generate: true for a throwaway CA and certificate)`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// enabled: false turns the section off, whatever else it says.
	if s := mustParse(t, "tls:\n  enabled: false\n", "c.yaml"); s.TLS != nil {
		t.Errorf("enabled: false: TLS = %+v, want nil", s.TLS)
	}
}

func TestPasswordFileProblems(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "empty"), []byte("\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "big"), make([]byte, maxSecretFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "cluster.yaml")
	for file, want := range map[string]string{
		"missing": "open " + filepath.Join(dir, "missing") + ": no such file or directory",
		"empty":   filepath.Join(dir, "empty") + " is empty",
		"big":     filepath.Join(dir, "big") + " is larger than 65536 bytes: not a password file",
	} {
		_, err := Parse([]byte("auth:\n  password_file: "+file+"\n"), path)
		if w := path + ":2: auth: password_file: " + want; err == nil || err.Error() != w {
			t.Errorf("password_file %s: err = %v\nwant %s", file, err, w)
		}
	}
}

// TestSecretsNeverPrint: printing or marshalling a loaded spec, its auth
// section, its problems or its client options never shows a password.
func TestSecretsNeverPrint(t *testing.T) {
	const admin, app = "Adm1nS3cret", "AppS3cret"
	s := mustParse(t, "auth:\n  password: "+admin+"\n  users:\n    - {name: app, password: "+app+", rules: '+@all'}\n", "c.yaml")
	var outs []string
	for _, v := range []any{s, *s, s.Auth, *s.Auth, s.Auth.Users, s.Auth.Password} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", v, err)
		}
		outs = append(outs, string(j))
	}
	y, err := yaml.Marshal(s.Auth)
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(y))
	o, err := s.ConnOptions()
	if err != nil {
		t.Fatal(err)
	}
	if o.Password != admin || o.Username != "" || o.TLSConfig != nil {
		t.Fatalf("ConnOptions = user %q, password ok %v, tls %v", o.Username, o.Password == admin, o.TLSConfig)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		outs = append(outs, fmt.Sprintf(verb, o), fmt.Sprintf(verb, &o), fmt.Sprintf(verb, struct{ Conn any }{o}))
	}
	// A problem about a password never quotes it.
	_, perr := Parse([]byte("auth:\n  password: x\n  users:\n    - {name: app, password: y, rules: '>"+app+" <"+admin+" #abc'}\n"), "c.yaml")
	if perr == nil {
		t.Fatal("password rules accepted")
	}
	outs = append(outs, perr.Error())
	for _, out := range outs {
		if strings.Contains(out, admin) || strings.Contains(out, app) {
			t.Errorf("output leaks a password: %s", out)
		}
	}
	if got := fmt.Sprint(s.Auth.Password); got != "[redacted]" {
		t.Errorf("Secret prints %q, want [redacted]", got)
	}
	if got := fmt.Sprint(Secret{}); got != "" {
		t.Errorf("empty Secret prints %q, want nothing", got)
	}
}

func TestTLSFiles(t *testing.T) {
	s := mustParse(t, "host: 127.0.0.2\ndir: /srv/state\ntls:\n  generate: true\n", "/srv/cluster.yaml")
	want := TLSFiles{Cert: "/srv/state/tls/node.crt", Key: "/srv/state/tls/node.key", CA: "/srv/state/tls/ca.crt",
		ClientCert: "/srv/state/tls/node.crt", ClientKey: "/srv/state/tls/node.key"}
	if got := s.TLSFiles(); got != want {
		t.Errorf("generated TLSFiles = %+v\nwant %+v", got, want)
	}
	if got := s.TLSHosts(); !reflect.DeepEqual(got, []string{"127.0.0.2", "127.0.0.1", "localhost"}) {
		t.Errorf("TLSHosts = %v", got)
	}
	if s.TLSAuthClients() != "yes" {
		t.Errorf("default auth_clients = %q, want yes", s.TLSAuthClients())
	}
	// Generated names match what tlsgen writes.
	if g := tlsgen.In("/srv/state/tls"); g.Cert != want.Cert || g.Key != want.Key || g.CA != want.CA {
		t.Errorf("tlsgen.In = %+v, spec expects %+v", g, want)
	}

	s = mustParse(t, `tls:
  cert_file: certs/node.crt
  key_file: /etc/keys/node.key
  ca_file: ../ca.crt
  auth_clients: optional
`, "/srv/specs/cluster.yaml")
	want = TLSFiles{Cert: "/srv/specs/certs/node.crt", Key: "/etc/keys/node.key", CA: "/srv/ca.crt",
		ClientCert: "/srv/specs/certs/node.crt", ClientKey: "/etc/keys/node.key"}
	if got := s.TLSFiles(); got != want {
		t.Errorf("given TLSFiles = %+v\nwant %+v", got, want)
	}
	if s.TLSAuthClients() != "optional" {
		t.Errorf("auth_clients = %q, want optional", s.TLSAuthClients())
	}
	s = mustParse(t, "tls: {cert_file: a, key_file: b, ca_file: c, client_cert_file: d, client_key_file: e, auth_clients: no}\n", "/x/c.yaml")
	if f := s.TLSFiles(); f.ClientCert != "/x/d" || f.ClientKey != "/x/e" || s.TLSAuthClients() != "no" {
		t.Errorf("client files = %+v, auth_clients %q", f, s.TLSAuthClients())
	}
	if f := mustParse(t, "", "c.yaml").TLSFiles(); f != (TLSFiles{}) {
		t.Errorf("TLS off: TLSFiles = %+v, want zero", f)
	}
}

func TestConnOptionsTLS(t *testing.T) {
	dir := t.TempDir()
	s := mustParse(t, "dir: "+dir+"\nauth: {password: pw}\ntls: {generate: true}\n", "c.yaml")
	// Before any material exists: an error callers can recognise.
	if _, err := s.ConnOptions(); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "ca.crt") {
		t.Fatalf("ConnOptions without material: err = %v, want ErrNotExist naming ca.crt", err)
	}
	if _, _, err := tlsgen.Ensure(s.TLSDir(), s.TLSHosts(), time.Now()); err != nil {
		t.Fatal(err)
	}
	o, err := s.ConnOptions()
	if err != nil {
		t.Fatal(err)
	}
	if o.Password != "pw" || o.TLSConfig == nil || o.TLSConfig.RootCAs == nil || len(o.TLSConfig.Certificates) != 1 {
		t.Fatalf("ConnOptions = %v, tls %+v", o, o.TLSConfig)
	}
	// auth_clients: no presents no client certificate.
	s.TLS.AuthClients = "no"
	if o, err = s.ConnOptions(); err != nil || len(o.TLSConfig.Certificates) != 0 {
		t.Errorf("auth_clients no: certificates %d, err %v", len(o.TLSConfig.Certificates), err)
	}
	// A CA file without certificates is an error naming it.
	s.TLS.AuthClients = ""
	if err := os.WriteFile(s.TLSFiles().CA, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConnOptions(); err == nil || !strings.Contains(err.Error(), s.TLSFiles().CA) {
		t.Errorf("junk CA: err = %v, want one naming %s", err, s.TLSFiles().CA)
	}
	// Without auth: or tls: the options are empty.
	if o, err := mustParse(t, "", "c.yaml").ConnOptions(); err != nil || o.Password != "" || o.TLSConfig != nil {
		t.Errorf("plain spec: ConnOptions = %v, %v", o, err)
	}
}

func TestSecurityValidateWithoutFile(t *testing.T) {
	s := &Spec{Name: "x", Host: "127.0.0.1", Ports: Ports{7001, 7002, 7003}, Dir: "/d", RedisServer: "redis-server",
		Auth: &Auth{Users: []User{{Name: "app", Password: NewSecret("p")}}}, TLS: &TLS{Generate: true, AuthClients: "sometimes"}}
	want := "auth: no password for the default user (set password, password_env or password_file); ACL users need it too: it is rcluster's admin identity\n" +
		`auth: users[0]: rules are missing (e.g. "~* &* +@all" for full access, "~app:* +@read" for reads of app:* keys)` + "\n" +
		`tls: auth_clients: "sometimes" must be yes, optional or no`
	if err := s.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() = %v\nwant:\n%s", err, want)
	}
	s.Auth.Password, s.Auth.Users[0].Rules, s.TLS.AuthClients = NewSecret("admin"), "+@all", ""
	if err := s.Validate(); err != nil {
		t.Errorf("valid spec: %v", err)
	}
}

func TestSecurityModeAndSummary(t *testing.T) {
	env := map[string]string{"PW": "Sup3rSecret", "APP": "AppSecret"}
	tests := []struct{ yaml, mode, summary string }{
		{"", "none", "auth: off; tls: off"},
		{"auth: {password_env: PW}\n", "auth", "auth: password from $PW; tls: off"},
		{"auth: {password: Sup3rSecret, users: [{name: app, password_env: APP, rules: '+@all'}, {name: ro, password: x, rules: '+@read'}]}\n",
			"auth", "auth: password from auth.password, 2 ACL users (app, ro); tls: off"},
		{"dir: /d\ntls: {generate: true}\n", "tls", "auth: off; tls: generated CA /d/tls/ca.crt, client certificates required"},
		{"auth: {password_env: PW}\ntls: {cert_file: /c, key_file: /k, ca_file: /ca, auth_clients: optional}\n",
			"auth+tls", "auth: password from $PW; tls: CA /ca, client certificates optional"},
	}
	for _, tt := range tests {
		s, err := ParseEnv([]byte(tt.yaml), "c.yaml", envOf(env))
		if err != nil {
			t.Fatal(err)
		}
		if got := s.SecurityMode(); got != tt.mode {
			t.Errorf("%q: SecurityMode = %q, want %q", tt.yaml, got, tt.mode)
		}
		if got := s.SecuritySummary(); got != tt.summary {
			t.Errorf("%q: SecuritySummary = %q\nwant %q", tt.yaml, got, tt.summary)
		}
	}
}
