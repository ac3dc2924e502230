package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Defaults for keys a spec leaves out.
const (
	DefaultName        = "dev"
	DefaultHost        = "127.0.0.1"
	DefaultRedisServer = "redis-server"
	// DefaultFile is the spec Resolve looks for in the working directory.
	DefaultFile = "cluster.yaml"
	// EnvFile names the spec file when no -f flag is given.
	EnvFile = "RCLUSTER_FILE"
)

// DefaultPorts are the seed layout's ports: three masters.
var DefaultPorts = Ports{7001, 7002, 7003}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// defaultDir is the state root for a cluster name, relative to the spec's
// directory.
func defaultDir(name string) string { return filepath.Join(".rcluster", name) }

// Default returns the built-in default spec (3 masters on 127.0.0.1:7001-7003,
// replicas 0, dir ./.rcluster/dev made absolute against cwd).
func Default() (*Spec, error) {
	dir, err := filepath.Abs(defaultDir(DefaultName))
	if err != nil {
		return nil, fmt.Errorf("default spec dir: %w", err)
	}
	return &Spec{
		Name:        DefaultName,
		Host:        DefaultHost,
		Ports:       append(Ports(nil), DefaultPorts...),
		Dir:         dir,
		RedisServer: DefaultRedisServer,
	}, nil
}

// Load reads, strictly decodes (unknown keys, wrong types, syntax errors are
// errors naming file:line), defaults and validates the spec at path.
// Relative dir/template are resolved against the file's directory.
// Secrets named by password_env are read from the process environment.
func Load(path string) (*Spec, error) { return LoadEnv(path, os.Getenv) }

// LoadEnv is Load reading password_env variables through getenv.
func LoadEnv(path string, getenv func(string) string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Problems: []Problem{{Msg: "read spec: " + err.Error(), Err: err}}}
	}
	return ParseEnv(data, path, getenv)
}

// Resolve picks the spec file: flag value, else $RCLUSTER_FILE, else
// ./cluster.yaml if it exists, else the built-in default. password_env
// variables are read through getenv too.
func Resolve(flagPath string, getenv func(string) string) (*Spec, error) {
	if flagPath != "" {
		return LoadEnv(flagPath, getenv)
	}
	if p := getenv(EnvFile); p != "" {
		return LoadEnv(p, getenv)
	}
	switch _, err := os.Stat(DefaultFile); {
	case err == nil:
		return LoadEnv(DefaultFile, getenv)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, &Error{Problems: []Problem{{Msg: "read spec: " + err.Error(), Err: err}}}
	}
	return Default()
}

// Parse strictly decodes data as the spec file path (used in messages and
// to resolve relative paths; empty means the working directory), applies
// defaults and validates. Every problem found is returned at once as *Error.
// Secrets named by password_env are read from the process environment;
// password_file paths are relative to path's directory.
func Parse(data []byte, path string) (*Spec, error) { return ParseEnv(data, path, os.Getenv) }

// ParseEnv is Parse reading password_env variables through getenv.
func ParseEnv(data []byte, path string, getenv func(string) string) (*Spec, error) {
	p := &parser{file: path, s: &Spec{Path: path, lines: map[string]int{}}, bad: map[string]bool{}, getenv: getenv}
	p.decode(data)
	if err := p.finish(); err != nil {
		p.problems = append(p.problems, Problem{File: path, Msg: err.Error(), Err: err})
	}
	p.problems = append(p.problems, p.s.validate(p.bad)...)
	if len(p.problems) > 0 {
		sortProblems(p.problems)
		return nil, &Error{Problems: p.problems}
	}
	return p.s, nil
}

// knownKeys are the spec's top-level keys, in documentation order.
var knownKeys = []string{"name", "host", "ports", "replicas", "dir", "redis_server", "template", "config", "auth", "tls"}

type parser struct {
	file     string
	s        *Spec
	problems []Problem
	bad      map[string]bool // keys whose value could not be decoded: not validated further
	getenv   func(string) string
}

func (p *parser) addf(line int, format string, args ...any) {
	p.problems = append(p.problems, Problem{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?(?:line (\d+): )?(.*)$`)

// yamlParserProblems are the messages of yaml.v3's parser (as opposed to its
// scanner) errors. yaml.v3 reports their line 0-based, and leaves the line
// out when it is the first one.
var yamlParserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// yamlProblem turns a yaml.v3 syntax error into a 1-based line and message.
func yamlProblem(err error) (int, string) {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	line, _ := strconv.Atoi(m[1]) // 0 when absent
	if yamlParserProblems[m[2]] {
		line++
	}
	return line, m[2]
}

func (p *parser) decode(data []byte) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := yamlProblem(err)
		p.addf(line, "invalid YAML: %s", msg)
		p.bad["*"] = true
		return
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return // empty file: all defaults
	}
	root := deref(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return
	}
	if root.Kind != yaml.MappingNode {
		p.addf(root.Line, "the spec must be a mapping of keys (name, ports, ...), got %s", kind(root))
		p.bad["*"] = true
		return
	}
	first := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], deref(root.Content[i+1])
		key := k.Value
		if l, dup := first[key]; dup {
			p.addf(k.Line, "duplicate key %q (first set on line %d)", key, l)
			continue
		}
		first[key] = k.Line
		p.s.lines[key] = k.Line
		switch key {
		case "name":
			p.str(key, v, &p.s.Name)
		case "host":
			p.str(key, v, &p.s.Host)
		case "dir":
			p.str(key, v, &p.s.Dir)
		case "redis_server":
			p.str(key, v, &p.s.RedisServer)
		case "template":
			p.str(key, v, &p.s.Template)
		case "replicas":
			p.replicas(v)
		case "ports":
			p.ports(v)
		case "config":
			p.config(v)
		case "auth":
			p.auth(v)
		case "tls":
			p.tls(v)
		default:
			if p.runtimeKey(key, v) {
				continue
			}
			msg := fmt.Sprintf("unknown key %q", key)
			if s := suggest(key, knownKeys); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += " (known keys: " + strings.Join(knownKeys, ", ") + ")"
			}
			p.addf(k.Line, "%s", msg)
		}
	}
}

// str decodes a string key. A null value leaves the default in place.
func (p *parser) str(key string, v *yaml.Node, dst *string) {
	if isNull(v) {
		return
	}
	if v.Kind != yaml.ScalarNode || v.Tag != "!!str" {
		p.addf(v.Line, "%s: expected a string, got %s", key, kind(v))
		p.bad[key] = true
		return
	}
	*dst = v.Value
}

func (p *parser) replicas(v *yaml.Node) {
	if isNull(v) {
		return
	}
	var n int
	if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || v.Decode(&n) != nil {
		p.addf(v.Line, "replicas: expected a whole number, got %s", kind(v))
		p.bad["replicas"] = true
		return
	}
	p.s.Replicas = n
}

func (p *parser) ports(v *yaml.Node) {
	if isNull(v) {
		return
	}
	p.s.Ports = Ports{} // present: no default even if empty
	switch {
	case v.Kind == yaml.SequenceNode:
		for i, item := range v.Content {
			item = deref(item)
			var n int
			if item.Kind != yaml.ScalarNode || item.Tag != "!!int" || item.Decode(&n) != nil {
				p.addf(item.Line, "ports: item %d: expected a port number, got %s", i+1, kind(item))
				p.bad["ports"] = true
				continue
			}
			p.s.lines[portKey(len(p.s.Ports))] = item.Line
			p.s.Ports = append(p.s.Ports, n)
		}
	case v.Kind == yaml.ScalarNode && v.Tag == "!!str":
		ports, err := ParsePortRange(v.Value)
		if err != nil {
			p.addf(v.Line, "ports: %v", err)
			p.bad["ports"] = true
			return
		}
		p.s.Ports = ports
	default:
		p.addf(v.Line, `ports: expected a list of ports or a range string like "7001-7006", got %s`, kind(v))
		p.bad["ports"] = true
	}
}

// MaxRangePorts bounds a range string, so a typo such as "7001-70006" is an
// error instead of tens of thousands of nodes.
const MaxRangePorts = 1000

// ParsePortRange parses "first-last" (inclusive) into a list of ports.
func ParsePortRange(r string) (Ports, error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(r), "-")
	a, errA := strconv.Atoi(strings.TrimSpace(lo))
	b, errB := strconv.Atoi(strings.TrimSpace(hi))
	switch {
	case !ok || errA != nil || errB != nil:
		return nil, fmt.Errorf(`%q is not a port range (want "first-last", e.g. "7001-7006")`, r)
	case a < 1 || b > 65535:
		return nil, fmt.Errorf("range %q is outside 1..65535", r)
	case a > b:
		return nil, fmt.Errorf("range %q is backwards (%d > %d)", r, a, b)
	case b-a+1 > MaxRangePorts:
		return nil, fmt.Errorf("range %q has %d ports, more than %d", r, b-a+1, MaxRangePorts)
	}
	out := make(Ports, 0, b-a+1)
	for port := a; port <= b; port++ {
		out = append(out, port)
	}
	return out, nil
}

func (p *parser) config(v *yaml.Node) {
	if isNull(v) {
		return
	}
	if v.Kind != yaml.MappingNode {
		p.addf(v.Line, "config: expected a mapping of redis.conf directives, got %s", kind(v))
		p.bad["config"] = true
		return
	}
	first := map[string]int{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := deref(v.Content[i]), deref(v.Content[i+1])
		key := k.Value
		if k.Kind != yaml.ScalarNode {
			p.addf(k.Line, "config: keys must be directive names, got %s", kind(k))
			continue
		}
		lower := strings.ToLower(key)
		if l, dup := first[lower]; dup {
			p.addf(k.Line, "config: duplicate directive %q (first set on line %d)", key, l)
			continue
		}
		first[lower] = k.Line
		var value string
		switch val.Kind {
		case yaml.ScalarNode:
			s, ok := scalar(val)
			if !ok {
				p.addf(val.Line, "config: %q has no value (write \"\" for an empty one)", key)
				continue
			}
			value = s
		case yaml.SequenceNode:
			parts := make([]string, 0, len(val.Content))
			ok := true
			for _, item := range val.Content {
				item = deref(item)
				s, isScalar := scalar(item)
				if item.Kind != yaml.ScalarNode || !isScalar {
					p.addf(item.Line, "config: %q: list items must be scalars, got %s", key, kind(item))
					ok = false
					break
				}
				if s == "" {
					s = `""`
				}
				parts = append(parts, s)
			}
			if !ok {
				continue
			}
			value = strings.Join(parts, " ")
		default:
			p.addf(val.Line, "config: %q: expected a scalar or a list of scalars, got %s", key, kind(val))
			continue
		}
		p.s.lines[configKey(key)] = k.Line
		p.s.Config = append(p.s.Config, Directive{Key: key, Value: value})
	}
}

// scalar renders a scalar node as a redis.conf value: bools as yes/no,
// everything else as written. ok is false for null.
func scalar(n *yaml.Node) (string, bool) {
	switch {
	case n.Kind != yaml.ScalarNode || n.Tag == "!!null":
		return "", false
	case n.Tag == "!!bool":
		var b bool
		if n.Decode(&b) == nil {
			if b {
				return "yes", true
			}
			return "no", true
		}
	}
	return n.Value, true
}

// finish applies defaults and makes dir and template absolute against the
// spec file's directory.
func (p *parser) finish() error {
	s := p.s
	if s.Name == "" {
		s.Name = DefaultName
	}
	if s.Host == "" {
		s.Host = DefaultHost
	}
	p.finishRuntime()
	if s.Ports == nil && !p.bad["ports"] && s.Runtime != RuntimeExternal {
		s.Ports = append(Ports(nil), DefaultPorts...)
	}
	if s.RedisServer == "" {
		s.RedisServer = DefaultRedisServer
	}
	if s.Dir == "" {
		s.Dir = defaultDir(s.Name)
	}
	base := p.base()
	var err error
	if s.Dir, err = absAgainst(base, s.Dir); err != nil {
		return fmt.Errorf("dir: %w", err)
	}
	if s.Template != "" {
		if s.Template, err = absAgainst(base, s.Template); err != nil {
			return fmt.Errorf("template: %w", err)
		}
	}
	return p.finishTLS()
}

func absAgainst(base, p string) (string, error) {
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	return filepath.Abs(p)
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// kind describes a node for "expected X, got Y" messages.
func kind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "nothing"
		case "!!str":
			return strconv.Quote(n.Value)
		}
		return n.Value
	}
	return "an unsupported YAML node"
}

// suggest returns the known key closest to key (at most 2 edits: insertions,
// deletions, substitutions or swaps of neighbours), or "".
func suggest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1) // transposition
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
