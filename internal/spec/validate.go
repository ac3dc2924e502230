package spec

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
)

// Problem is one spec problem, with file:line when known.
type Problem struct {
	File string
	Line int
	Msg  string
	// Err is the underlying error, if any (e.g. the *fs.PathError of a
	// missing spec file), so callers can use errors.Is/As.
	Err error
}

func (p Problem) String() string {
	switch {
	case p.File != "" && p.Line > 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	case p.File != "":
		return p.File + ": " + p.Msg
	case p.Line > 0:
		return fmt.Sprintf("line %d: %s", p.Line, p.Msg)
	}
	return p.Msg
}

// Error is a spec error (exit code 2): one or more problems.
type Error struct {
	Problems []Problem
}

// Error lists the problems one per line as "file:line: msg".
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems' underlying errors.
func (e *Error) Unwrap() []error {
	var out []error
	for _, p := range e.Problems {
		if p.Err != nil {
			out = append(out, p.Err)
		}
	}
	return out
}

// OwnedKeys are the redis.conf directives rcluster sets itself, with the
// reason a spec's config: may not override them.
var OwnedKeys = map[string]string{
	"port":                "rcluster sets it per node from ports:",
	"bind":                "rcluster sets it from host:",
	"cluster-enabled":     "rcluster only runs cluster nodes",
	"cluster-config-file": "rcluster manages each node's nodes file",
	"cluster-port":        "rcluster relies on the default bus port (port+10000)",
	"daemonize":           "rcluster manages the processes",
	"pidfile":             "rcluster keeps pid files under dir:",
	"logfile":             "rcluster keeps log files under dir:",
	"dir":                 "rcluster keeps each node's data under dir: (set dir: instead)",
	"include":             "an included file could override the settings rcluster owns",

	"requirepass":               "set auth.password (or password_env, password_file) instead",
	"masterauth":                "rcluster sets it from auth: so replicas can sync",
	"masteruser":                "replicas authenticate as the default user with auth: 's password",
	"user":                      "declare ACL users under auth.users",
	"aclfile":                   "ACL users come from auth.users",
	"tls-port":                  "rcluster sets it from ports: when tls: is enabled",
	"tls-cert-file":             "set tls.cert_file (or tls.generate) instead",
	"tls-key-file":              "set tls.key_file (or tls.generate) instead",
	"tls-key-file-pass":         "encrypted TLS keys are not supported",
	"tls-client-cert-file":      "set tls.client_cert_file instead",
	"tls-client-key-file":       "set tls.client_key_file instead",
	"tls-client-key-file-pass":  "encrypted TLS keys are not supported",
	"tls-ca-cert-file":          "set tls.ca_file (or tls.generate) instead",
	"tls-ca-cert-dir":           "set tls.ca_file instead",
	"tls-auth-clients":          "set tls.auth_clients instead",
	"tls-cluster":               "rcluster sets it from tls:",
	"tls-replication":           "rcluster sets it from tls:",
	"cluster-announce-tls-port": "rcluster sets the ports from ports:",
}

// Validate reports every problem at once as *Error.
func (s *Spec) Validate() error {
	if ps := s.validate(nil); len(ps) > 0 {
		sortProblems(ps)
		return &Error{Problems: ps}
	}
	return nil
}

// validate checks s, skipping keys in skip (their values failed to decode
// and were already reported); skip["*"] skips everything.
func (s *Spec) validate(skip map[string]bool) []Problem {
	if skip["*"] {
		return nil
	}
	var ps []Problem
	add := func(line int, format string, args ...any) {
		ps = append(ps, Problem{File: s.Path, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	if !skip["name"] && !nameRE.MatchString(s.Name) {
		add(s.line("name"), "name: %q must match %s", s.Name, nameRE)
	}
	if !skip["host"] && s.Runtime != RuntimeExternal && net.ParseIP(s.Host) == nil {
		add(s.line("host"), "host: %q must be an IP address (hostnames are not supported yet)", s.Host)
	}
	if !skip["replicas"] && s.Replicas < 0 {
		add(s.line("replicas"), "replicas: must be 0 or more, got %d", s.Replicas)
	}
	if !skip["dir"] && s.Dir == "" {
		add(s.line("dir"), "dir: must not be empty")
	}
	if !skip["redis_server"] && s.RedisServer == "" {
		add(s.line("redis_server"), "redis_server: must not be empty")
	}
	if !skip["ports"] && s.Runtime != RuntimeExternal {
		ps = append(ps, s.validatePorts(skip["replicas"])...)
	}
	ps = append(ps, s.validateRuntime(skip)...)
	if !skip["config"] {
		for _, d := range s.Config {
			line := s.line(configKey(d.Key), "config")
			if why, owned := OwnedKeys[strings.ToLower(d.Key)]; owned {
				add(line, "config: %q cannot be set here: %s", d.Key, why)
			}
			if d.Key == "" || strings.ContainsAny(d.Key, " \t\r\n") {
				add(line, "config: directive name %q must be one word without whitespace", d.Key)
			}
			if strings.ContainsAny(d.Value, "\r\n") {
				add(line, "config: value of %q contains a newline", d.Key)
			}
		}
	}
	ps = append(ps, s.validateSecurity(skip)...)
	return ps
}

func (s *Spec) validatePorts(skipReplicas bool) []Problem {
	var ps []Problem
	add := func(line int, format string, args ...any) {
		ps = append(ps, Problem{File: s.Path, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	if len(s.Ports) == 0 {
		add(s.line("ports"), "ports: no ports given")
		return ps
	}
	index := map[int]int{} // client port -> first index
	for i, p := range s.Ports {
		if _, seen := index[p]; !seen {
			index[p] = i
		}
	}
	for i, p := range s.Ports {
		line := s.line(portKey(i), "ports")
		if p < 1 || p > 65535 {
			add(line, "ports: port %d is out of range 1..65535", p)
			continue
		}
		if first := index[p]; first != i {
			add(line, "ports: port %d is listed twice", p)
			continue
		}
		bus := p + BusPortOffset
		if bus > 65535 {
			add(line, "ports: port %d has cluster bus port %d, above 65535 (use ports below %d)", p, bus, 65536-BusPortOffset)
		} else if _, clash := index[bus]; clash {
			add(line, "ports: port %d's cluster bus port %d is also node %d's client port", p, bus, bus)
		}
	}
	if !skipReplicas && s.Replicas >= 0 {
		if m := s.Masters(); m < 3 {
			add(s.line("ports"), "ports: %s with %s per master give %d master%s; Redis Cluster needs at least 3 (use at least %d ports or fewer replicas)",
				plural(len(s.Ports), "node"), plural(s.Replicas, "replica"), m, pluralS(m), 3*(s.Replicas+1))
		}
	}
	return ps
}

func plural(n int, word string) string { return strconv.Itoa(n) + " " + word + pluralS(n) }

func pluralS(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func portKey(i int) string      { return "ports." + strconv.Itoa(i) }
func configKey(k string) string { return "config." + strings.ToLower(k) }

// line returns the line of the first of keys recorded while decoding, or 0.
func (s *Spec) line(keys ...string) int {
	for _, k := range keys {
		if l, ok := s.lines[k]; ok {
			return l
		}
	}
	return 0
}

// sortProblems orders problems by line; problems without a line go last.
func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i].Line, ps[j].Line
		if a == 0 || b == 0 {
			return a != 0 && b == 0
		}
		return a < b
	})
}
