package spec

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Runtimes: how the nodes of a spec run.
const (
	// RuntimeProcess runs each node as a local redis-server process (the
	// default; an empty Spec.Runtime means the same).
	RuntimeProcess = "process"
	// RuntimeDocker runs each node as a container of Image: with host
	// networking (the default) listening on host:port exactly like a
	// process would, with network: bridge on its own IP (see Network).
	RuntimeDocker = "docker"
	// RuntimeExternal uses nodes rcluster did not start, listed under
	// nodes:. up forms the cluster on them; down leaves them running.
	RuntimeExternal = "external"
)

// Runtimes lists the valid runtime: values.
var Runtimes = []string{RuntimeProcess, RuntimeDocker, RuntimeExternal}

// DefaultImage is the image of runtime: docker when image: is not set: the
// official Redis 7 image.
const DefaultImage = "redis:7"

// runtimeKeys are the top-level keys of this file, added to knownKeys so
// unknown-key messages suggest them.
var runtimeKeys = []string{"runtime", "image", "nodes", "network", "subnet"}

func init() { knownKeys = append(knownKeys, runtimeKeys...) }

// IsExternal reports whether rcluster did not start the spec's nodes.
func (s *Spec) IsExternal() bool { return s.Runtime == RuntimeExternal }

// RuntimeName is the spec's runtime, process when none is set.
func (s *Spec) RuntimeName() string {
	if s.Runtime == "" {
		return RuntimeProcess
	}
	return s.Runtime
}

// IsDocker reports whether the spec's nodes run as containers.
func (s *Spec) IsDocker() bool { return s.Runtime == RuntimeDocker }

// nodeKey is the lines key of item i of nodes:.
func nodeKey(i int) string { return "nodes." + strconv.Itoa(i) }

// runtimeKey decodes the keys of this file; false means key is not one.
func (p *parser) runtimeKey(key string, v *yaml.Node) bool {
	switch key {
	case "runtime":
		p.str(key, v, &p.s.Runtime)
	case "image":
		p.str(key, v, &p.s.Image)
	case "nodes":
		p.nodes(v)
	case "network":
		p.str(key, v, &p.s.Network)
	case "subnet":
		p.str(key, v, &p.s.Subnet)
	default:
		return false
	}
	return true
}

// nodes decodes nodes: a list whose items are "host:port" strings or
// mappings {host: ..., port: ...}.
func (p *parser) nodes(v *yaml.Node) {
	if isNull(v) {
		return
	}
	if v.Kind != yaml.SequenceNode {
		p.addf(v.Line, `nodes: expected a list of nodes ({host: 10.0.0.5, port: 6379} or "10.0.0.5:6379"), got %s`, kind(v))
		p.bad["nodes"] = true
		return
	}
	p.s.ExternalNodes = []Node{} // present: validated even if empty
	for i, item := range v.Content {
		item = deref(item)
		n, err := decodeNode(item)
		if err != nil {
			p.addf(item.Line, "nodes: item %d: %v", i+1, err)
			p.bad["nodes"] = true
			continue
		}
		p.s.lines[nodeKey(len(p.s.ExternalNodes))] = item.Line
		p.s.ExternalNodes = append(p.s.ExternalNodes, n)
	}
}

func decodeNode(item *yaml.Node) (Node, error) {
	switch {
	case item.Kind == yaml.ScalarNode && item.Tag == "!!str":
		return ParseNode(item.Value)
	case item.Kind == yaml.MappingNode:
		var n Node
		seen := map[string]bool{}
		for j := 0; j+1 < len(item.Content); j += 2 {
			k, val := deref(item.Content[j]), deref(item.Content[j+1])
			if seen[k.Value] {
				return Node{}, fmt.Errorf("duplicate key %q", k.Value)
			}
			seen[k.Value] = true
			switch k.Value {
			case "host":
				if val.Kind != yaml.ScalarNode || val.Tag != "!!str" {
					return Node{}, fmt.Errorf("host: expected a string, got %s", kind(val))
				}
				n.Host = val.Value
			case "port":
				if val.Kind != yaml.ScalarNode || val.Tag != "!!int" || val.Decode(&n.Port) != nil {
					return Node{}, fmt.Errorf("port: expected a port number, got %s", kind(val))
				}
			default:
				return Node{}, fmt.Errorf("unknown key %q (a node has host and port)", k.Value)
			}
		}
		if !seen["host"] || !seen["port"] {
			return Node{}, fmt.Errorf("a node needs both host and port")
		}
		return n, nil
	}
	return Node{}, fmt.Errorf(`expected {host: ..., port: ...} or "host:port", got %s`, kind(item))
}

// ParseNode parses "host:port" ("[v6]:port" for IPv6 addresses).
func ParseNode(hp string) (Node, error) {
	host, port, err := net.SplitHostPort(strings.TrimSpace(hp))
	if err != nil {
		return Node{}, fmt.Errorf("%q is not host:port", hp)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return Node{}, fmt.Errorf("%q: port %q is not a number", hp, port)
	}
	return Node{Host: host, Port: n}, nil
}

// finishRuntime applies the defaults of this file's keys. runtime: stays
// empty when not given; empty means process everywhere.
func (p *parser) finishRuntime() {
	s := p.s
	if s.Runtime == RuntimeDocker && s.Image == "" {
		s.Image = DefaultImage
	}
}

// validateRuntime checks runtime:, image: and nodes: and the keys that mean
// nothing for the chosen runtime.
func (s *Spec) validateRuntime(skip map[string]bool) []Problem {
	var ps []Problem
	add := func(line int, format string, args ...any) {
		ps = append(ps, Problem{File: s.Path, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	rt := s.Runtime
	if rt == "" {
		rt = RuntimeProcess
	}
	valid := false
	for _, r := range Runtimes {
		valid = valid || r == rt
	}
	if !skip["runtime"] && !valid {
		add(s.line("runtime"), "runtime: %q is not one of %s", s.Runtime, strings.Join(Runtimes, ", "))
		return ps
	}
	if !skip["image"] {
		switch {
		case rt != RuntimeDocker && s.Image != "":
			add(s.line("image"), "image: only used with runtime: docker (runtime is %s)", rt)
		case rt == RuntimeDocker && (s.Image == "" || strings.ContainsAny(s.Image, " \t\r\n")):
			add(s.line("image"), "image: %q must be an image name such as %s", s.Image, DefaultImage)
		}
	}
	ps = append(ps, s.validateNetwork(skip, rt)...)
	if rt != RuntimeExternal {
		if !skip["nodes"] && s.ExternalNodes != nil {
			add(s.line("nodes"), "nodes: only used with runtime: external (runtime %s places nodes at host: and ports:)", rt)
		}
		return ps
	}
	// runtime: external. Keys about starting or configuring nodes mean nothing.
	for _, k := range []string{"host", "ports", "redis_server", "template", "config"} {
		if l, ok := s.lines[k]; ok && !skip[k] {
			add(l, "%s: not used with runtime: external (rcluster neither starts nor configures those nodes; list them under nodes:)", k)
		}
	}
	if skip["nodes"] {
		return ps
	}
	if len(s.ExternalNodes) == 0 {
		add(s.line("nodes", "runtime"), "nodes: runtime: external needs the nodes' addresses, e.g. nodes: [{host: 10.0.0.5, port: 6379}, ...]")
		return ps
	}
	seen := map[string]int{}
	for i, n := range s.ExternalNodes {
		line := s.line(nodeKey(i), "nodes")
		if msg := checkHost(n.Host); msg != "" {
			add(line, "nodes: item %d: %s", i+1, msg)
			continue
		}
		if n.Port < 1 || n.Port > 65535 {
			add(line, "nodes: item %d: port %d is out of range 1..65535", i+1, n.Port)
			continue
		}
		key := strings.ToLower(n.Addr())
		if first, dup := seen[key]; dup {
			add(line, "nodes: %s is listed twice (items %d and %d)", n.Addr(), first+1, i+1)
			continue
		}
		seen[key] = i
	}
	if !skip["replicas"] && s.Replicas >= 0 {
		if m := s.Masters(); m < 3 {
			add(s.line("nodes"), "nodes: %s with %s per master give %d master%s; Redis Cluster needs at least 3 (list at least %d nodes or ask for fewer replicas)",
				plural(len(s.ExternalNodes), "node"), plural(s.Replicas, "replica"), m, pluralS(m), 3*(s.Replicas+1))
		}
	}
	return ps
}

// checkHost returns why host is not an IP address or a plausible hostname,
// or "".
func checkHost(host string) string {
	switch {
	case host == "":
		return "host is empty"
	case net.ParseIP(host) != nil:
		return ""
	case len(host) > 253 || strings.ContainsAny(host, " \t\r\n/:@[]"):
		return fmt.Sprintf("host %q is neither an IP address nor a hostname", host)
	}
	return ""
}

// Resolver looks up a hostname's addresses (net.DefaultResolver has this
// method).
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// ResolveHosts replaces every hostname among the external nodes by an IP
// address (the first IPv4 one, else the first), since CLUSTER MEET needs IPs
// and nodes announce IPs. A nil r uses net.DefaultResolver. Specs of other
// runtimes are left alone (their host: is already an IP). It fails naming
// every host that did not resolve, and nodes that resolve to the same
// address.
func (s *Spec) ResolveHosts(ctx context.Context, r Resolver) error {
	if !s.IsExternal() {
		return nil
	}
	if r == nil {
		r = net.DefaultResolver
	}
	cache := map[string]string{}
	var ps []Problem
	for i, n := range s.ExternalNodes {
		if net.ParseIP(n.Host) != nil {
			continue
		}
		ip, ok := cache[n.Host]
		if !ok {
			addrs, err := r.LookupIPAddr(ctx, n.Host)
			switch {
			case err != nil:
				ps = append(ps, Problem{File: s.Path, Line: s.line(nodeKey(i), "nodes"),
					Msg: fmt.Sprintf("nodes: cannot resolve %s: %v", n.Host, err), Err: err})
			case len(addrs) == 0:
				ps = append(ps, Problem{File: s.Path, Line: s.line(nodeKey(i), "nodes"),
					Msg: fmt.Sprintf("nodes: %s has no addresses", n.Host)})
			default:
				ip = pickIP(addrs)
			}
			cache[n.Host] = ip
		}
		if ip != "" {
			s.ExternalNodes[i].Host = ip
		}
	}
	seen := map[string]int{}
	for i, n := range s.ExternalNodes {
		if first, dup := seen[n.Addr()]; dup {
			ps = append(ps, Problem{File: s.Path, Line: s.line(nodeKey(i), "nodes"),
				Msg: fmt.Sprintf("nodes: items %d and %d are the same node %s", first+1, i+1, n.Addr())})
			continue
		}
		seen[n.Addr()] = i
	}
	if len(ps) > 0 {
		sortProblems(ps)
		return &Error{Problems: ps}
	}
	return nil
}

func pickIP(addrs []net.IPAddr) string {
	for _, a := range addrs {
		if a.IP.To4() != nil {
			return a.IP.String()
		}
	}
	return addrs[0].IP.String()
}

// NewExternal builds the spec of `rcluster create`: runtime external on
// the given nodes, validated like a file's.
func NewExternal(name, dir string, nodes []Node, replicas int) (*Spec, error) {
	s := &Spec{Name: name, Dir: dir, Runtime: RuntimeExternal, ExternalNodes: nodes, Replicas: replicas,
		Host: DefaultHost, RedisServer: DefaultRedisServer}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// Networks of runtime: docker (key network:).
const (
	// NetworkHost runs every container with host networking: nodes bind
	// host:port on the host itself (the default; empty means the same).
	// No node can be cut off the others.
	NetworkHost = "host"
	// NetworkBridge puts the containers on a bridge network of the
	// cluster's own, each node on its own fixed IP in Subnet, so one node
	// can be disconnected from it (a partition). Host clients reach the
	// container IPs directly on Linux only.
	NetworkBridge = "bridge"
)

// Networks lists the valid network: values.
var Networks = []string{NetworkHost, NetworkBridge}

// BridgeHostOffset is where node addresses start in a bridge subnet: node
// i (spec order) gets the subnet's address .10+i, clear of the gateway
// (.1) and of any address Docker would hand out by itself.
const BridgeHostOffset = 10

// BridgePool is where BridgeSubnet derives a /24 when subnet: is not set:
// private (RFC 1918), and outside Docker's default address pools
// (172.17-172.31.0.0/16, 192.168.0.0/16), so it never overlaps a network
// Docker numbered by itself; only another cluster's derived /24 (1 in 256)
// or a subnet someone chose can, and the engine then refuses to create it.
var BridgePool = netip.MustParsePrefix("172.16.0.0/16")

// IsBridge reports whether the spec's nodes run as containers on a bridge
// network of their own (runtime: docker, network: bridge).
func (s *Spec) IsBridge() bool { return s.Runtime == RuntimeDocker && s.Network == NetworkBridge }

// BridgeSubnet is network: bridge's subnet: subnet: when set, else the
// /24 of BridgePool chosen by the first byte of sha256(Dir), so a cluster
// keeps its addresses across runs and clusters in different state dirs
// usually get different ones. It is invalid (IsValid false) when subnet:
// does not parse (Validate reports that).
func (s *Spec) BridgeSubnet() netip.Prefix {
	if s.Subnet != "" {
		p, err := netip.ParsePrefix(s.Subnet)
		if err != nil {
			return netip.Prefix{}
		}
		return p
	}
	h := sha256.Sum256([]byte(s.Dir))
	b := BridgePool.Addr().As4()
	b[2] = h[0]
	return netip.PrefixFrom(netip.AddrFrom4(b), 24)
}

// BridgeGateway is the bridge subnet's first address, the host's side of
// the network.
func (s *Spec) BridgeGateway() netip.Addr { return s.BridgeSubnet().Masked().Addr().Next() }

// bridgeNodes are the nodes of network: bridge: port i on the subnet's
// address .BridgeHostOffset+i.
func (s *Spec) bridgeNodes() []Node {
	a := s.BridgeSubnet().Masked().Addr() // the zero Addr when invalid
	for range BridgeHostOffset {
		a = a.Next()
	}
	out := make([]Node, len(s.Ports))
	for i, p := range s.Ports {
		out[i] = Node{Host: a.String(), Port: p}
		a = a.Next()
	}
	return out
}

// bridgeOwned are the directives network: bridge sets on every node, with
// the reason config: may not set them.
var bridgeOwned = map[string]string{
	"cluster-announce-ip": "rcluster announces each node's container IP",
	"protected-mode":      "rcluster turns it off without auth: (clients come from the bridge's gateway, not loopback)",
}

// validateNetwork checks network: and subnet:, and the keys that mean
// nothing with network: bridge.
func (s *Spec) validateNetwork(skip map[string]bool, rt string) []Problem {
	var ps []Problem
	add := func(line int, format string, args ...any) {
		ps = append(ps, Problem{File: s.Path, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	if !skip["network"] && s.Network != "" {
		switch {
		case rt != RuntimeDocker:
			add(s.line("network"), "network: only used with runtime: docker (runtime is %s)", rt)
		case s.Network != NetworkHost && s.Network != NetworkBridge:
			add(s.line("network"), "network: %q is not one of %s", s.Network, strings.Join(Networks, ", "))
		}
	}
	if !skip["subnet"] && !skip["network"] && s.Subnet != "" && !s.IsBridge() {
		add(s.line("subnet"), "subnet: only used with network: bridge")
	}
	if !s.IsBridge() {
		return ps
	}
	if !skip["subnet"] && s.Subnet != "" {
		if msg := s.checkSubnet(); msg != "" {
			add(s.line("subnet"), "subnet: %s", msg)
		}
	}
	if _, set := s.lines["host"]; set && !skip["host"] {
		add(s.line("host"), "host: not used with network: bridge (each node gets its own IP in the subnet, from .%d up; remove host:)", BridgeHostOffset)
	}
	if !skip["config"] {
		for _, d := range s.Config {
			if why, owned := bridgeOwned[strings.ToLower(d.Key)]; owned {
				add(s.line(configKey(d.Key), "config"), "config: %q cannot be set with network: bridge: %s", d.Key, why)
			}
		}
	}
	if !skip["tls"] && s.TLS != nil && s.TLS.Generate {
		add(s.line("tls"), "tls: generate is not supported with network: bridge yet (the generated certificate names host:, not the nodes' container IPs); give your own certificate valid for them, or use network: host")
	}
	return ps
}

// checkSubnet returns why subnet: is not a private IPv4 network with room
// for every node, or "".
func (s *Spec) checkSubnet() string {
	p, err := netip.ParsePrefix(s.Subnet)
	switch {
	case err != nil:
		return fmt.Sprintf("%q is not an IPv4 network such as 172.30.7.0/24", s.Subnet)
	case !p.Addr().Is4():
		return fmt.Sprintf("%q is not IPv4 (the bridge network is IPv4 only)", s.Subnet)
	case p.Masked() != p:
		return fmt.Sprintf("%q has host bits set; write %s", s.Subnet, p.Masked())
	case !p.Addr().IsPrivate():
		return fmt.Sprintf("%s is not a private network (use one inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)", p)
	}
	// Node addresses run from .BridgeHostOffset and must stay below the
	// broadcast address.
	room := max(1<<(32-p.Bits())-1-BridgeHostOffset, 0)
	if n := len(s.Ports); n > room {
		return fmt.Sprintf("%s has room for %d nodes (addresses from .%d up), the spec has %d; use a larger subnet", p, room, BridgeHostOffset, n)
	}
	return ""
}
