// Package spec defines rcluster's cluster specification (cluster.yaml): its
// types, strict loading with defaults, validation that reports every problem
// at once, and the on-disk layout derived from it.
package spec

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
)

// BusPortOffset is the distance between a node's client port and its cluster
// bus port when cluster-port is not set (Redis's default).
const BusPortOffset = 10000

// SlotCount is the number of hash slots in a Redis Cluster.
const SlotCount = 16384

// Spec is a parsed, defaulted cluster.yaml.
type Spec struct {
	// Name identifies the cluster (used in state paths, labels, messages).
	Name string `yaml:"name"`
	// Host is the address every node binds to and announces.
	Host string `yaml:"host"`
	// Ports lists the client ports, in spec order. The first
	// len(Ports)/(Replicas+1) become masters.
	Ports Ports `yaml:"ports"`
	// Replicas is the number of replicas per master (--cluster-replicas).
	Replicas int `yaml:"replicas"`
	// Dir is the state root. After Load it is absolute.
	Dir string `yaml:"dir"`
	// RedisServer is the redis-server binary (looked up in PATH).
	RedisServer string `yaml:"redis_server"`
	// Template optionally overrides the embedded redis.conf template.
	// After Load it is absolute (or empty).
	Template string `yaml:"template"`
	// Config holds extra redis.conf directives for every node, in file order.
	Config Config `yaml:"config"`
	// Auth, when set, makes every node require a password (and defines ACL
	// users). Its secrets never print (see Secret).
	Auth *Auth `yaml:"auth"`
	// TLS, when set, makes every node speak TLS only, on the client port,
	// the cluster bus and replication links.
	TLS *TLS `yaml:"tls"`
	// Runtime is how nodes run: process (default), docker or external
	// (see runtime.go).
	Runtime string `yaml:"runtime"`
	// Image is the container image of runtime: docker.
	Image string `yaml:"image"`
	// ExternalNodes are the nodes of runtime: external (key nodes:).
	ExternalNodes []Node `yaml:"nodes"`
	// Network is runtime docker's networking: host (the default; empty
	// means the same) or bridge, a network of the cluster's own where each
	// node has its own IP (see runtime.go).
	Network string `yaml:"network"`
	// Subnet is network: bridge's IPv4 subnet ("172.30.7.0/24"); empty
	// means one derived from Dir (see BridgeSubnet).
	Subnet string `yaml:"subnet"`

	// Path is the file the spec was loaded from; empty for the built-in default.
	Path string `yaml:"-"`

	// lines maps keys ("ports", "ports.<index>", "config.<directive>") to
	// the line they were decoded from, for problems found by Validate.
	lines map[string]int
}

// Ports is a list of TCP ports. In YAML it is either a sequence of integers
// or a range string such as "7001-7006".
type Ports []int

// Directive is one redis.conf line: a key and its value as written.
type Directive struct {
	Key   string
	Value string
}

// Config is an ordered list of redis.conf directives. In YAML it is a
// mapping; scalar values and sequences of scalars (joined by spaces) are
// accepted.
type Config []Directive

// Get returns the value of the last directive named key (case-insensitive,
// as Redis treats them) and whether it was present.
func (c Config) Get(key string) (string, bool) {
	v, ok := "", false
	for _, d := range c {
		if equalFold(d.Key, key) {
			v, ok = d.Value, true
		}
	}
	return v, ok
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Node is one node of the spec: where it listens.
type Node struct {
	Host string
	Port int
}

// Addr is host:port.
func (n Node) Addr() string { return net.JoinHostPort(n.Host, strconv.Itoa(n.Port)) }

// BusPort is the node's cluster bus port.
func (n Node) BusPort() int { return n.Port + BusPortOffset }

func (n Node) String() string { return n.Addr() }

// Nodes returns the spec's nodes in spec order.
func (s *Spec) Nodes() []Node {
	if s.Runtime == RuntimeExternal {
		return append([]Node(nil), s.ExternalNodes...)
	}
	if s.IsBridge() {
		return s.bridgeNodes()
	}
	out := make([]Node, len(s.Ports))
	for i, p := range s.Ports {
		out[i] = Node{Host: s.Host, Port: p}
	}
	return out
}

// Addrs returns host:port for every node in spec order.
func (s *Spec) Addrs() []string {
	nodes := s.Nodes()
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Addr()
	}
	return out
}

// Masters is the number of masters the spec asks for.
// It is 0 when Replicas is negative (an invalid spec).
func (s *Spec) Masters() int {
	if s.Replicas < 0 {
		return 0
	}
	return len(s.Nodes()) / (s.Replicas + 1)
}

// Describe names the spec for messages: its file, or "built-in default".
func (s *Spec) Describe() string {
	if s.Path == "" {
		return "built-in default spec"
	}
	return s.Path
}

// Layout: where each node's files live under Dir. This mirrors the manual
// setup rcluster replaces: conf/, run/, log/, db/redis_<port>/.

func (s *Spec) ConfDir() string { return filepath.Join(s.Dir, "conf") }
func (s *Spec) RunDir() string  { return filepath.Join(s.Dir, "run") }
func (s *Spec) LogDir() string  { return filepath.Join(s.Dir, "log") }
func (s *Spec) DBDir() string   { return filepath.Join(s.Dir, "db") }

// ConfFile is <dir>/conf/redis_<port>.conf.
func (s *Spec) ConfFile(port int) string {
	return filepath.Join(s.ConfDir(), fmt.Sprintf("redis_%d.conf", port))
}

// PidFile is <dir>/run/redis_<port>.pid.
func (s *Spec) PidFile(port int) string {
	return filepath.Join(s.RunDir(), fmt.Sprintf("redis_%d.pid", port))
}

// LogFile is <dir>/log/redis_<port>.log.
func (s *Spec) LogFile(port int) string {
	return filepath.Join(s.LogDir(), fmt.Sprintf("redis_%d.log", port))
}

// DataDir is <dir>/db/redis_<port>, the node's working directory.
func (s *Spec) DataDir(port int) string {
	return filepath.Join(s.DBDir(), fmt.Sprintf("redis_%d", port))
}

// NodesFileName is the cluster-config-file name, relative to DataDir.
func (s *Spec) NodesFileName(port int) string { return fmt.Sprintf("nodes-%d.conf", port) }

// NodesFile is the absolute path of the node's cluster config file.
func (s *Spec) NodesFile(port int) string {
	return filepath.Join(s.DataDir(port), s.NodesFileName(port))
}
