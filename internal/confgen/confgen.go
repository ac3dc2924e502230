// Package confgen renders one redis.conf per node from the template
// (templates/redis.conf.tmpl, embedded; overridable by the spec).
//
// The spec's config: directives are applied to the rendered text: a
// directive whose name the template already sets replaces that line (and
// drops any further lines of the same name); the rest are appended in spec
// order. Custom templates get the same treatment without any extra syntax.
//
// The spec's auth: and tls: sections are applied the same way, before
// config: (which may not name their directives), so a custom template can
// never silently drop a password or TLS: requirepass, masterauth and ACL
// `user` lines; with TLS, `port 0` replaces the template's port and
// tls-port takes the node's port, with tls-cluster and tls-replication on.
// Rendered files hold secrets and are written 0600 in 0700 directories.
package confgen

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/tlsgen"
	"github.com/rcluster/rcluster/templates"
)

// Data is what the redis.conf template sees for one node.
type Data struct {
	Spec *spec.Spec
	Node spec.Node

	Name    string // cluster name
	Host    string
	Port    int
	BusPort int
	// NodesFile is the cluster-config-file name, relative to DataDir.
	NodesFile string
	ConfFile  string
	PidFile   string
	LogFile   string
	DataDir   string
	// NodeTimeout is the default cluster-node-timeout (ms): see
	// DefaultNodeTimeout. The spec's config: replaces it.
	NodeTimeout int
}

// DefaultNodeTimeout is the cluster-node-timeout rcluster renders for a
// cluster of n nodes: 5000 ms (the manual setup's) below 150 nodes, then
// 100 ms per node. Redis's heartbeat traffic grows with the square of the
// node count (every pair pings every timeout/2 with ~n/10 gossip entries):
// measured on 2 cores, a formed 300-node cluster at 5000 ms saturates the
// machine (load 330) and never forms, while at 30000 ms it idles at 1.4
// cores and forms in 26-29 s.
func DefaultNodeTimeout(n int) int {
	if n < 150 {
		return 5000
	}
	return 100 * n
}

// Funcs are the template functions: quote renders a string as one
// redis.conf argument.
var Funcs = template.FuncMap{"quote": Quote}

// Render returns the redis.conf for node n of s.
func Render(s *spec.Spec, n spec.Node) ([]byte, error) {
	t, err := parseTemplate(s)
	if err != nil {
		return nil, err
	}
	return render(t, s, n)
}

// Write renders every node's config into s.ConfFile(port) (0600), creating
// the layout directories (0700): conf, run, log, db/redis_<port>. It returns
// the written paths in node order. s.Dir is created 0700 when missing; an
// existing one keeps its mode (it may be a directory the user chose).
//
// With tls: {generate: true} it also makes sure s.TLSDir() (0700) holds a
// CA and node certificate valid for s.TLSHosts() (see internal/tlsgen);
// with given files it checks they are readable.
func Write(s *spec.Spec) ([]string, error) {
	t, err := parseTemplate(s)
	if err != nil {
		return nil, err
	}
	nodes := s.Nodes()
	confs := make([][]byte, len(nodes))
	for i, n := range nodes { // render everything before touching the disk
		if confs[i], err = render(t, s, n); err != nil {
			return nil, err
		}
	}
	return writeConfs(s, confs)
}

// writeConfs creates the layout (0700: Dir, conf, run, log, db,
// db/redis_<port>), makes sure the TLS material exists, and writes each
// node's rendered config (0600) into s.ConfFile(port), in node order.
func writeConfs(s *spec.Spec, confs [][]byte) ([]string, error) {
	nodes := s.Nodes()
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	for _, d := range []string{s.ConfDir(), s.RunDir(), s.LogDir(), s.DBDir()} {
		if err := privateDir(d); err != nil {
			return nil, err
		}
	}
	if err := EnsureTLS(s); err != nil {
		return nil, err
	}
	paths := make([]string, len(nodes))
	for i, n := range nodes {
		if err := privateDir(s.DataDir(n.Port)); err != nil {
			return nil, fmt.Errorf("node %d: %w", n.Port, err)
		}
		paths[i] = s.ConfFile(n.Port)
		if err := writeFile(paths[i], confs[i]); err != nil {
			return nil, fmt.Errorf("node %d: %w", n.Port, err)
		}
	}
	return paths, nil
}

func parseTemplate(s *spec.Spec) (*template.Template, error) {
	name, text := "redis.conf.tmpl", templates.RedisConf
	if s.Template != "" {
		b, err := os.ReadFile(s.Template)
		if err != nil {
			return nil, fmt.Errorf("read template: %w", err)
		}
		name, text = s.Template, string(b)
	}
	t, err := template.New(filepath.Base(name)).Funcs(Funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parse template %s: %w", name, err)
	}
	return t, nil
}

func render(t *template.Template, s *spec.Spec, n spec.Node) ([]byte, error) {
	d := Data{
		Spec: s, Node: n,
		Name: s.Name, Host: n.Host, Port: n.Port, BusPort: n.BusPort(),
		NodesFile: s.NodesFileName(n.Port),
		ConfFile:  s.ConfFile(n.Port),
		PidFile:   s.PidFile(n.Port),
		LogFile:   s.LogFile(n.Port),
		DataDir:   s.DataDir(n.Port),

		NodeTimeout: DefaultNodeTimeout(len(s.Nodes())),
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("render config for node %d: %w", n.Port, err)
	}
	conf := applyDirectives(buf.Bytes(), securityDirectives(s, n),
		"# From the spec's auth: and tls: (this file holds secrets: keep it 0600)")
	return applyDirectives(conf, s.Config, "# From the spec's config:"), nil
}

// securityDirectives are the lines the spec's auth: and tls: set for node n,
// values already in redis.conf syntax.
func securityDirectives(s *spec.Spec, n spec.Node) spec.Config {
	var out spec.Config
	add := func(key, value string) { out = append(out, spec.Directive{Key: key, Value: value}) }
	if t := s.TLS; t != nil {
		f := s.TLSFiles()
		add("port", "0") // the client port speaks TLS only
		add("tls-port", strconv.Itoa(n.Port))
		add("tls-cert-file", Quote(f.Cert))
		add("tls-key-file", Quote(f.Key))
		add("tls-ca-cert-file", Quote(f.CA))
		if t.ClientCertFile != "" {
			add("tls-client-cert-file", Quote(f.ClientCert))
			add("tls-client-key-file", Quote(f.ClientKey))
		}
		add("tls-auth-clients", s.TLSAuthClients())
		add("tls-replication", "yes")
		add("tls-cluster", "yes")
	}
	if a := s.Auth; a != nil && !a.Password.IsZero() {
		pw := a.Password.Reveal()
		add("requirepass", Quote(pw))
		add("masterauth", Quote(pw)) // replicas authenticate to masters as default
		if len(a.Users) > 0 {
			// Spelled out so the default user stays rcluster's full-access
			// admin identity next to the ACL users.
			add("user", "default on "+Quote(">"+pw)+" ~* &* +@all")
			for _, u := range a.Users {
				add("user", Quote(u.Name)+" on "+Quote(">"+u.Password.Reveal())+" "+strings.Join(strings.Fields(u.Rules), " "))
			}
		}
	}
	return out
}

// EnsureTLS makes sure the spec's TLS material exists: with generate, a CA
// and node certificate in s.TLSDir() (created or renewed); with given files,
// that each is readable.
func EnsureTLS(s *spec.Spec) error {
	t := s.TLS
	if t == nil {
		return nil
	}
	if t.Generate {
		if _, _, err := tlsgen.Ensure(s.TLSDir(), s.TLSHosts(), time.Now()); err != nil {
			return fmt.Errorf("generate TLS material: %w", err)
		}
		return nil
	}
	for _, f := range []struct{ key, path string }{
		{"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"ca_file", t.CAFile},
		{"client_cert_file", t.ClientCertFile}, {"client_key_file", t.ClientKeyFile},
	} {
		if f.path == "" {
			continue
		}
		fh, err := os.Open(f.path)
		if err != nil {
			return fmt.Errorf("tls: %s: %w", f.key, err)
		}
		fh.Close()
	}
	return nil
}

// applyDirectives puts directives into the rendered text: the directives
// of one name replace the text's first line of that name (compared
// case-insensitively, as Redis reads them) in place, further lines of that
// name are dropped, and directives the text does not set are appended
// under header. A name may have several directives (ACL `user` lines).
func applyDirectives(conf []byte, dirs spec.Config, header string) []byte {
	text := strings.TrimRight(string(conf), "\n")
	if len(dirs) == 0 {
		return []byte(text + "\n")
	}
	placed := map[string]bool{}
	var out []string
	for _, line := range strings.Split(text, "\n") {
		key, ok := directiveName(line, dirs)
		switch {
		case !ok:
			out = append(out, line)
		case !placed[key]:
			for _, d := range dirs {
				if strings.ToLower(d.Key) == key {
					out = append(out, directiveLine(d))
				}
			}
			placed[key] = true
		}
		// a repeated line of an overridden directive is dropped
	}
	first := true
	for _, d := range dirs {
		if placed[strings.ToLower(d.Key)] {
			continue
		}
		if first {
			out = append(out, "", header)
			first = false
		}
		out = append(out, directiveLine(d))
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

// directiveName returns the lower-cased name of the directive line sets
// when dirs names it; ok is false for comments, blank lines and
// directives dirs does not name.
func directiveName(line string, dirs spec.Config) (string, bool) {
	f := strings.Fields(line)
	if len(f) == 0 || strings.HasPrefix(f[0], "#") {
		return "", false
	}
	for _, d := range dirs {
		if strings.EqualFold(f[0], d.Key) {
			return strings.ToLower(d.Key), true
		}
	}
	return "", false
}

// directiveLine renders a spec directive. Values are written as given
// (redis.conf syntax, several arguments allowed); an empty value becomes "".
func directiveLine(d spec.Directive) string {
	if d.Value == "" {
		return d.Key + ` ""`
	}
	return d.Key + " " + d.Value
}

// Quote returns v as a single redis.conf argument: as is when that is safe,
// otherwise double-quoted with the escapes Redis's config parser understands.
func Quote(v string) string {
	if v != "" && !strings.ContainsFunc(v, needsQuote) {
		return v
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\', '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 || c == 0x7f {
				fmt.Fprintf(&b, `\x%02x`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

func needsQuote(r rune) bool {
	return r <= ' ' || r == 0x7f || r == '"' || r == '\'' || r == '\\'
}

// privateDir creates dir (and parents) and makes it 0700.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("chmod dir: %w", err)
	}
	return nil
}

// writeFile replaces path atomically with a 0600 file holding data.
func writeFile(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write config %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}
