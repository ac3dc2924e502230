// Package confgen renders one redis.conf per node from the template
// (templates/redis.conf.tmpl, embedded; overridable by the spec).
//
// The spec's config: directives are applied to the rendered text: a
// directive whose name the template already sets replaces that line (and
// drops any further lines of the same name); the rest are appended in spec
// order. Custom templates get the same treatment without any extra syntax.
package confgen

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/rcluster/rcluster/internal/spec"
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
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	for _, d := range []string{s.ConfDir(), s.RunDir(), s.LogDir(), s.DBDir()} {
		if err := privateDir(d); err != nil {
			return nil, err
		}
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
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("render config for node %d: %w", n.Port, err)
	}
	return applyConfig(buf.Bytes(), s.Config), nil
}

// applyConfig puts the spec's directives into the rendered template: each
// replaces the template's line(s) of the same name (case-insensitively, as
// Redis reads them) in place, or is appended at the end.
func applyConfig(conf []byte, cfg spec.Config) []byte {
	text := strings.TrimRight(string(conf), "\n")
	if len(cfg) == 0 {
		return []byte(text + "\n")
	}
	placed := make([]bool, len(cfg))
	var out []string
	for _, line := range strings.Split(text, "\n") {
		i := directiveIndex(line, cfg)
		switch {
		case i < 0:
			out = append(out, line)
		case !placed[i]:
			out = append(out, directiveLine(cfg[i]))
			placed[i] = true
		}
		// a repeated line of an overridden directive is dropped
	}
	header := false
	for i, d := range cfg {
		if placed[i] {
			continue
		}
		if !header {
			out = append(out, "", "# From the spec's config:")
			header = true
		}
		out = append(out, directiveLine(d))
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

// directiveIndex returns the index in cfg of the directive line sets, or -1
// for comments, blank lines and directives cfg does not name.
func directiveIndex(line string, cfg spec.Config) int {
	f := strings.Fields(line)
	if len(f) == 0 || strings.HasPrefix(f[0], "#") {
		return -1
	}
	for i, d := range cfg {
		if strings.EqualFold(f[0], d.Key) {
			return i
		}
	}
	return -1
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
