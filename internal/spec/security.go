package spec

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/rcluster/rcluster/internal/redisconn"
	"gopkg.in/yaml.v3"
)

// Secret is a password. It never shows itself: fmt (every verb), JSON, YAML
// and text marshalling print "[redacted]" (or nothing when empty), so a
// spec can be logged or dumped without leaking it. Reveal returns the value.
//
// The value sits behind a pointer: even fmt's paths that skip Format (a
// struct printed with a verb its pointer fields do not support, such as %s
// or %d) print a nested pointer as an address, never the string.
type Secret struct{ v *string }

// NewSecret wraps v.
func NewSecret(v string) Secret {
	if v == "" {
		return Secret{}
	}
	return Secret{v: &v}
}

// Reveal returns the secret's value. Only renderers and client options call it.
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.Reveal() == "" }

const redacted = "[redacted]"

func (s Secret) String() string {
	if s.IsZero() {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// Format makes every fmt verb print the redacted form.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// MarshalText (and so JSON) writes the redacted form.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalYAML writes the redacted form.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// Auth is the spec's auth: section. When present, every node requires the
// password (requirepass) as the default user, which is rcluster's admin
// identity, and replicas authenticate to their masters with it (masterauth).
type Auth struct {
	// Password is the default user's password.
	Password Secret `yaml:"password"`
	// Source says where the password came from, for messages:
	// "auth.password" (or "auth.users[i].password"), "$NAME" or
	// "file PATH". Never the value.
	Source string `yaml:"source"`
	// Users are extra ACL users, rendered as `user` directives.
	Users []User `yaml:"users"`
}

// User is one ACL user besides default.
type User struct {
	Name     string `yaml:"name"`
	Password Secret `yaml:"password"`
	Source   string `yaml:"source"`
	// Rules are the user's ACL rules (e.g. "~app:* +@read"), space separated.
	// Passwords never go here.
	Rules string `yaml:"rules"`
}

// TLS is the spec's tls: section. When enabled, each node's client port
// accepts TLS only (port 0, tls-port = the spec port), and the cluster bus
// (port+10000) and replication links use TLS too.
type TLS struct {
	// Generate makes rcluster create a throwaway CA and node certificate
	// under <dir>/tls (see internal/tlsgen); the file keys are then empty.
	Generate bool `yaml:"generate"`
	// CertFile, KeyFile and CAFile are the nodes' certificate, key and trust
	// root (absolute after Load), when not generated.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
	// ClientCertFile and ClientKeyFile optionally give the certificate nodes
	// and rcluster present as clients; by default CertFile/KeyFile.
	ClientCertFile string `yaml:"client_cert_file"`
	ClientKeyFile  string `yaml:"client_key_file"`
	// AuthClients is tls-auth-clients: "yes" (the default: clients must
	// present a certificate the CA signed), "optional" or "no".
	AuthClients string `yaml:"auth_clients"`
}

// TLSFiles are the TLS files every node and rcluster use.
type TLSFiles struct {
	Cert, Key, CA         string
	ClientCert, ClientKey string
}

// TLSDir is <dir>/tls, where generated TLS material lives.
func (s *Spec) TLSDir() string { return filepath.Join(s.Dir, "tls") }

// Generated TLS file names inside TLSDir (they match internal/tlsgen's).
const (
	GeneratedCAFile   = "ca.crt"
	GeneratedCertFile = "node.crt"
	GeneratedKeyFile  = "node.key"
)

// TLSFiles returns the TLS file paths; zero when TLS is off.
func (s *Spec) TLSFiles() TLSFiles {
	t := s.TLS
	if t == nil {
		return TLSFiles{}
	}
	f := TLSFiles{Cert: t.CertFile, Key: t.KeyFile, CA: t.CAFile, ClientCert: t.ClientCertFile, ClientKey: t.ClientKeyFile}
	if t.Generate {
		d := s.TLSDir()
		f = TLSFiles{Cert: filepath.Join(d, GeneratedCertFile), Key: filepath.Join(d, GeneratedKeyFile), CA: filepath.Join(d, GeneratedCAFile)}
	}
	if f.ClientCert == "" {
		f.ClientCert, f.ClientKey = f.Cert, f.Key
	}
	return f
}

// TLSHosts are the names the generated node certificate is valid for: the
// spec's host, 127.0.0.1 and localhost.
func (s *Spec) TLSHosts() []string {
	out := []string{s.Host}
	for _, h := range []string{"127.0.0.1", "localhost"} {
		if h != s.Host {
			out = append(out, h)
		}
	}
	return out
}

// TLSAuthClients is the effective tls-auth-clients value.
func (t *TLS) authClients() string {
	if t.AuthClients == "" {
		return "yes"
	}
	return t.AuthClients
}

// TLSAuthClients returns the tls-auth-clients value nodes run with ("" when TLS is off).
func (s *Spec) TLSAuthClients() string {
	if s.TLS == nil {
		return ""
	}
	return s.TLS.authClients()
}

// ConnOptions returns the client settings every rcluster command must use to
// talk to the spec's nodes: the admin identity (the default user, so
// Username stays empty, with auth.password) and, with tls:, a TLS config
// that trusts the spec's CA and presents the client certificate. Timeout
// and NoRetry are left for the caller. With generated TLS material that
// does not exist yet (before the first `up`), the error wraps
// fs.ErrNotExist.
func (s *Spec) ConnOptions() (redisconn.Options, error) {
	var o redisconn.Options
	if s.Auth != nil {
		o.Password = s.Auth.Password.Reveal()
	}
	if s.TLS != nil {
		cfg, err := s.ClientTLSConfig()
		if err != nil {
			return redisconn.Options{}, err
		}
		o.TLSConfig = cfg
	}
	return o, nil
}

// ClientTLSConfig is the TLS configuration of rcluster's clients, or nil
// when TLS is off. Server certificates are verified against the CA (for the
// IP or name dialed); the client certificate is presented unless
// auth_clients is "no".
func (s *Spec) ClientTLSConfig() (*tls.Config, error) {
	if s.TLS == nil {
		return nil, nil
	}
	f := s.TLSFiles()
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("tls: CA certificate: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("tls: CA certificate %s: no PEM certificate in it", f.CA)
	}
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if s.TLS.authClients() != "no" {
		pair, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate %s: %w", f.ClientCert, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// SecretEnvNames lists the environment variables the spec reads secrets
// from. Processes rcluster starts (redis-server) must not inherit them:
// /proc/<pid>/environ would show them.
func (s *Spec) SecretEnvNames() []string {
	var out []string
	add := func(src string) {
		if name, ok := strings.CutPrefix(src, "$"); ok {
			out = append(out, name)
		}
	}
	if s.Auth != nil {
		add(s.Auth.Source)
		for _, u := range s.Auth.Users {
			add(u.Source)
		}
	}
	return out
}

// SecurityMode is "none", "auth", "tls" or "auth+tls": what a client needs
// to talk to the nodes. It holds nothing secret, so it may be saved with the
// cluster's state to notice a spec whose mode no longer matches the
// running nodes (they read auth: and tls: only when they start).
func (s *Spec) SecurityMode() string {
	switch {
	case s.Auth != nil && s.TLS != nil:
		return "auth+tls"
	case s.Auth != nil:
		return "auth"
	case s.TLS != nil:
		return "tls"
	}
	return "none"
}

// SecuritySummary describes auth: and tls: for humans (up/status output),
// without any secret: e.g. `auth: password from $RCLUSTER_PASSWORD, 2 ACL
// users (app, reader); tls: generated CA <dir>/tls/ca.crt, client
// certificates required`.
func (s *Spec) SecuritySummary() string {
	var parts []string
	if a := s.Auth; a != nil {
		p := "auth: password from " + a.Source
		if n := len(a.Users); n > 0 {
			names := make([]string, n)
			for i, u := range a.Users {
				names[i] = u.Name
			}
			p += fmt.Sprintf(", %s (%s)", plural(n, "ACL user"), strings.Join(names, ", "))
		}
		parts = append(parts, p)
	} else {
		parts = append(parts, "auth: off")
	}
	if t := s.TLS; t != nil {
		p := "tls: CA " + s.TLSFiles().CA
		if t.Generate {
			p = "tls: generated CA " + s.TLSFiles().CA
		}
		switch t.authClients() {
		case "yes":
			p += ", client certificates required"
		case "optional":
			p += ", client certificates optional"
		default:
			p += ", no client certificates"
		}
		parts = append(parts, p)
	} else {
		parts = append(parts, "tls: off")
	}
	return strings.Join(parts, "; ")
}

// ChildEnv returns environ (os.Environ() form) without the variables named
// by SecretEnvNames: the environment to start redis-server with.
func (s *Spec) ChildEnv(environ []string) []string {
	drop := s.SecretEnvNames()
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !contains(drop, name) {
			out = append(out, kv)
		}
	}
	return out
}

// --- decoding ---

var (
	authKeys   = []string{"password", "password_env", "password_file", "users"}
	userKeys   = []string{"name", "password", "password_env", "password_file", "rules"}
	tlsKeys    = []string{"enabled", "generate", "cert_file", "key_file", "ca_file", "client_cert_file", "client_key_file", "auth_clients"}
	secretKeys = []string{"password", "password_env", "password_file"}
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// maxSecretFile bounds a password file, so a wrong path (a log, a binary)
// is an error instead of a huge "password".
const maxSecretFile = 64 << 10

// fields checks a mapping's keys against known (reporting unknown and
// duplicate keys as prefix: ...) and returns key -> (key node, value node).
// incomplete is set when a key was unknown, so "missing X" problems (likely
// the misspelt key) are not reported on top.
func (p *parser) fields(prefix string, v *yaml.Node, known []string) (out map[string][2]*yaml.Node, incomplete bool) {
	out = map[string][2]*yaml.Node{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := deref(v.Content[i]), deref(v.Content[i+1])
		key := k.Value
		if prev, dup := out[key]; dup {
			p.addf(k.Line, "%s: duplicate key %q (first set on line %d)", prefix, key, prev[0].Line)
			continue
		}
		if !contains(known, key) {
			msg := fmt.Sprintf("%s: unknown key %q", prefix, key)
			if s := suggestKey(key, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += " (known keys: " + strings.Join(known, ", ") + ")"
			}
			p.addf(k.Line, "%s", msg)
			incomplete = true
			continue
		}
		out[key] = [2]*yaml.Node{k, val}
	}
	return out, incomplete
}

// suggestKey is suggest, falling back to the one known key that starts
// with key ("cert" -> "cert_file").
func suggestKey(key string, known []string) string {
	if s := suggest(key, known); s != "" {
		return s
	}
	match := ""
	for _, k := range known {
		if key != "" && strings.HasPrefix(k, strings.ToLower(key)) {
			if match != "" {
				return ""
			}
			match = k
		}
	}
	return match
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (p *parser) auth(v *yaml.Node) {
	if isNull(v) {
		return
	}
	if v.Kind != yaml.MappingNode {
		p.addf(v.Line, "auth: expected a mapping (password or password_env or password_file, and users), got %s", kind(v))
		p.bad["auth"] = true
		return
	}
	a := &Auth{}
	p.s.Auth = a
	f, incomplete := p.fields("auth", v, authKeys)
	if incomplete {
		p.bad["auth.password"] = true
	}
	a.Password, a.Source = p.secret("auth", "auth", "auth.password", f)
	uf, ok := f["users"]
	if !ok || isNull(uf[1]) {
		return
	}
	users := uf[1]
	p.s.lines["auth.users"] = uf[0].Line
	if users.Kind != yaml.SequenceNode {
		p.addf(users.Line, "auth: users: expected a list of users (name, password, rules), got %s", kind(users))
		return
	}
	for i, item := range users.Content {
		item = deref(item)
		prefix := fmt.Sprintf("auth: users[%d]", i)
		key := userKey(i)
		p.s.lines[key] = item.Line
		if item.Kind != yaml.MappingNode {
			p.addf(item.Line, "%s: expected a mapping (name, password, rules), got %s", prefix, kind(item))
			p.bad[key] = true
			continue
		}
		uf, incomplete := p.fields(prefix, item, userKeys)
		if incomplete {
			p.bad[key+".name"], p.bad[key+".password"], p.bad[key+".rules"] = true, true, true
		}
		var u User
		if n, ok := uf["name"]; ok {
			p.s.lines[key+".name"] = n[0].Line
			p.field(prefix+": name", key+".name", n[1], &u.Name)
		}
		if r, ok := uf["rules"]; ok {
			p.s.lines[key+".rules"] = r[0].Line
			var ok bool
			if u.Rules, ok = p.rules(prefix, r[1]); !ok {
				p.bad[key+".rules"] = true
			}
		}
		u.Password, u.Source = p.secret(prefix, fmt.Sprintf("auth.users[%d]", i), key+".password", uf)
		a.Users = append(a.Users, u)
	}
}

func userKey(i int) string { return "auth.users." + strconv.Itoa(i) }

// field decodes a string like str, marking badKey when it cannot.
func (p *parser) field(label, badKey string, v *yaml.Node, dst *string) {
	if !isNull(v) && (v.Kind != yaml.ScalarNode || v.Tag != "!!str") {
		p.addf(v.Line, "%s: expected a string, got %s", label, kind(v))
		p.bad[badKey] = true
		return
	}
	p.str(label, v, dst)
}

// rules decodes a user's ACL rules: a string, or a list of strings joined
// by spaces. ok is false when a problem was reported.
func (p *parser) rules(prefix string, v *yaml.Node) (string, bool) {
	switch {
	case isNull(v):
		return "", true
	case v.Kind == yaml.ScalarNode && v.Tag == "!!str":
		return v.Value, true
	case v.Kind == yaml.SequenceNode:
		parts := make([]string, 0, len(v.Content))
		for _, item := range v.Content {
			item = deref(item)
			if item.Kind != yaml.ScalarNode || item.Tag != "!!str" {
				p.addf(item.Line, "%s: rules: list items must be strings, got %s", prefix, kind(item))
				return "", false
			}
			parts = append(parts, item.Value)
		}
		return strings.Join(parts, " "), true
	}
	p.addf(v.Line, `%s: rules: expected ACL rules as a string like "~app:* +@all" or a list of them, got %s`, prefix, kind(v))
	return "", false
}

// secret reads the one password source among password, password_env and
// password_file in f. Problems are reported at the key's line; lineKey
// records where the password was set; path names the mapping in the
// returned source ("auth.users[1]"), which never contains the value.
func (p *parser) secret(prefix, path, lineKey string, f map[string][2]*yaml.Node) (Secret, string) {
	var given []string
	for _, k := range secretKeys {
		if kv, ok := f[k]; ok && !isNull(kv[1]) {
			given = append(given, k)
		}
	}
	if len(given) == 0 {
		return Secret{}, ""
	}
	if len(given) > 1 {
		line := 0 // report at the later of the keys in the file
		for _, k := range given {
			line = max(line, f[k][0].Line)
		}
		p.addf(line, "%s: give only one of password, password_env, password_file (found %s)", prefix, strings.Join(given, " and "))
		p.bad[lineKey] = true
		return Secret{}, ""
	}
	k, v := f[given[0]][0], f[given[0]][1]
	p.s.lines[lineKey] = k.Line
	fail := func(format string, args ...any) (Secret, string) {
		p.addf(v.Line, "%s: %s: %s", prefix, k.Value, fmt.Sprintf(format, args...))
		p.bad[lineKey] = true
		return Secret{}, ""
	}
	if v.Kind != yaml.ScalarNode {
		return fail("expected a string, got %s", kind(v))
	}
	switch k.Value {
	case "password":
		// Any scalar, exactly as written (a password may look like a number).
		if v.Value == "" {
			return fail("must not be empty")
		}
		return NewSecret(v.Value), path + ".password"
	case "password_env":
		if v.Tag != "!!str" || !envNameRE.MatchString(v.Value) {
			return fail("%q is not an environment variable name", v.Value)
		}
		val := p.getenv(v.Value)
		if val == "" {
			return fail("$%s is not set or empty", v.Value)
		}
		return NewSecret(val), "$" + v.Value
	default: // password_file
		if v.Tag != "!!str" || v.Value == "" {
			return fail("expected a file path, got %s", kind(v))
		}
		path, err := absAgainst(p.base(), v.Value)
		if err != nil {
			return fail("%v", err)
		}
		val, err := readSecretFile(path)
		if err != nil {
			return fail("%v", err)
		}
		return NewSecret(val), "file " + path
	}
}

// readSecretFile reads a password file: trailing newlines are trimmed, the
// rest is the password. Errors name the file, never its content.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s is larger than %d bytes: not a password file", path, maxSecretFile)
	}
	val := strings.TrimRight(string(b), "\r\n")
	if val == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return val, nil
}

func (p *parser) tls(v *yaml.Node) {
	if isNull(v) {
		return
	}
	if v.Kind != yaml.MappingNode {
		p.addf(v.Line, "tls: expected a mapping (enabled, generate or cert_file/key_file/ca_file), got %s", kind(v))
		p.bad["tls"] = true
		return
	}
	t := &TLS{}
	enabled := true
	f, _ := p.fields("tls", v, tlsKeys)
	boolean := func(key string, dst *bool) {
		kv, ok := f[key]
		if !ok || isNull(kv[1]) {
			return
		}
		if kv[1].Kind != yaml.ScalarNode || kv[1].Tag != "!!bool" || kv[1].Decode(dst) != nil {
			p.addf(kv[1].Line, "tls: %s: expected true or false, got %s", key, kind(kv[1]))
			p.bad["tls"] = true
		}
	}
	boolean("enabled", &enabled)
	boolean("generate", &t.Generate)
	for key, dst := range map[string]*string{
		"cert_file": &t.CertFile, "key_file": &t.KeyFile, "ca_file": &t.CAFile,
		"client_cert_file": &t.ClientCertFile, "client_key_file": &t.ClientKeyFile,
	} {
		if kv, ok := f[key]; ok {
			p.s.lines["tls."+key] = kv[0].Line
			p.field("tls: "+key, "tls."+key, kv[1], dst)
		}
	}
	if kv, ok := f["auth_clients"]; ok && !isNull(kv[1]) {
		p.s.lines["tls.auth_clients"] = kv[0].Line
		if s, ok := scalar(kv[1]); ok && kv[1].Kind == yaml.ScalarNode {
			t.AuthClients = s
		} else {
			p.addf(kv[1].Line, "tls: auth_clients: expected yes, optional or no, got %s", kind(kv[1]))
			p.bad["tls"] = true
		}
	}
	if enabled {
		p.s.TLS = t
	}
}

func (p *parser) base() string {
	if p.file == "" {
		return "."
	}
	return filepath.Dir(p.file)
}

// finishTLS makes the TLS file paths absolute against the spec's directory.
func (p *parser) finishTLS() error {
	t := p.s.TLS
	if t == nil {
		return nil
	}
	for _, f := range []*string{&t.CertFile, &t.KeyFile, &t.CAFile, &t.ClientCertFile, &t.ClientKeyFile} {
		if *f == "" {
			continue
		}
		abs, err := absAgainst(p.base(), *f)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		*f = abs
	}
	return nil
}

// --- validation ---

var userNameRE = regexp.MustCompile(`^[^\s"'\\]+$`)

// forbiddenRules are ACL rules that set or clear passwords or reset the
// user: passwords come only from password/password_env/password_file.
func forbiddenRule(r string) bool {
	if r == "" {
		return false
	}
	switch r[0] {
	case '>', '<', '#', '!':
		return true
	}
	switch strings.ToLower(r) {
	case "nopass", "resetpass", "reset":
		return true
	}
	return false
}

func (s *Spec) validateSecurity(skip map[string]bool) []Problem {
	var ps []Problem
	add := func(line int, format string, args ...any) {
		ps = append(ps, Problem{File: s.Path, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	if a := s.Auth; a != nil && !skip["auth"] {
		if a.Password.IsZero() && !skip["auth.password"] {
			msg := "auth: no password for the default user (set password, password_env or password_file)"
			if len(a.Users) > 0 {
				msg += "; ACL users need it too: it is rcluster's admin identity"
			}
			add(s.line("auth"), "%s", msg)
		}
		names := map[string]int{}
		for i, u := range a.Users {
			key := userKey(i)
			if skip[key] {
				continue
			}
			prefix := fmt.Sprintf("auth: users[%d]", i)
			line := s.line(key+".name", key, "auth.users", "auth")
			switch {
			case skip[key+".name"]:
			case u.Name == "":
				add(s.line(key, "auth.users", "auth"), "%s: name is missing", prefix)
			case strings.EqualFold(u.Name, "default"):
				add(line, "%s: %q is rcluster's admin identity: set its password with auth.password (or password_env, password_file)", prefix, u.Name)
			case !userNameRE.MatchString(u.Name):
				add(line, "%s: name %q must be one word without quotes or backslashes", prefix, u.Name)
			default:
				if first, dup := names[u.Name]; dup {
					add(line, "%s: user %q is already defined by users[%d]", prefix, u.Name, first)
				} else {
					names[u.Name] = i
				}
			}
			if u.Password.IsZero() && !skip[key+".password"] {
				add(s.line(key, "auth.users", "auth"), "%s: no password (set password, password_env or password_file)", prefix)
			}
			rline := s.line(key+".rules", key, "auth.users", "auth")
			if strings.TrimSpace(u.Rules) == "" && !skip[key+".rules"] {
				add(rline, `%s: rules are missing (e.g. "~* &* +@all" for full access, "~app:* +@read" for reads of app:* keys)`, prefix)
			}
			for _, r := range strings.Fields(u.Rules) {
				if forbiddenRule(r) {
					add(rline, "%s: rule %q is not allowed here: passwords come only from password, password_env or password_file", prefix, ruleForMessage(r))
				}
			}
			if strings.ContainsAny(u.Rules, "\"'\\") || strings.ContainsFunc(u.Rules, func(r rune) bool { return r < ' ' && r != '\t' }) {
				add(rline, "%s: rules must not contain quotes, backslashes or control characters", prefix)
			}
		}
	}
	if t := s.TLS; t != nil && !skip["tls"] {
		line := func(key string) int { return s.line("tls."+key, "tls") }
		files := map[string]string{"cert_file": t.CertFile, "key_file": t.KeyFile, "ca_file": t.CAFile}
		if t.Generate {
			for _, k := range []string{"cert_file", "key_file", "ca_file", "client_cert_file", "client_key_file"} {
				if v := map[string]string{"client_cert_file": t.ClientCertFile, "client_key_file": t.ClientKeyFile}[k]; v != "" || files[k] != "" {
					add(line(k), "tls: %s cannot be combined with generate: true (rcluster makes its own CA and certificate)", k)
				}
			}
		} else {
			for _, k := range []string{"cert_file", "key_file", "ca_file"} {
				if files[k] == "" && !skip["tls."+k] {
					add(s.line("tls"), "tls: %s is required (or set generate: true for a throwaway CA and certificate)", k)
				}
			}
			if (t.ClientCertFile == "") != (t.ClientKeyFile == "") {
				add(s.line("tls.client_cert_file", "tls.client_key_file", "tls"), "tls: client_cert_file and client_key_file go together")
			}
		}
		switch t.AuthClients {
		case "", "yes", "no", "optional":
		default:
			add(line("auth_clients"), "tls: auth_clients: %q must be yes, optional or no", t.AuthClients)
		}
		for _, f := range []string{t.CertFile, t.KeyFile, t.CAFile, t.ClientCertFile, t.ClientKeyFile} {
			if strings.ContainsAny(f, "\r\n") {
				add(s.line("tls"), "tls: file name %q contains a newline", f)
			}
		}
	}
	return ps
}

// ruleForMessage shows a forbidden rule without the password it may carry.
func ruleForMessage(r string) string {
	if r != "" && strings.ContainsRune("><#!", rune(r[0])) {
		return r[:1] + "..."
	}
	return r
}
