package spec

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestRuntimeProblems(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown runtime", "runtime: podman\n",
			[]string{`cluster.yaml:1: runtime: "podman" is not one of process, docker, external`}},
		{"runtime typo key", "runtme: docker\n",
			[]string{`cluster.yaml:1: unknown key "runtme" (did you mean "runtime"?)`}},
		{"image without docker", "image: redis:7\n",
			[]string{`cluster.yaml:1: image: only used with runtime: docker (runtime is process)`}},
		{"image with space", "runtime: docker\nimage: \"redis 7\"\n",
			[]string{`cluster.yaml:2: image: "redis 7" must be an image name such as redis:7`}},
		{"nodes without external", "runtime: docker\nnodes: [\"10.0.0.1:6379\"]\n",
			[]string{`cluster.yaml:2: nodes: only used with runtime: external (runtime docker places nodes at host: and ports:)`}},
		{"external without nodes", "runtime: external\n",
			[]string{`cluster.yaml:1: nodes: runtime: external needs the nodes' addresses, e.g. nodes: [{host: 10.0.0.5, port: 6379}, ...]`}},
		{"external with ports and config", "runtime: external\nports: 7001-7003\nconfig:\n  maxmemory: 1mb\nnodes: [a:1, b:1, c:1]\n",
			[]string{
				`cluster.yaml:2: ports: not used with runtime: external (rcluster neither starts nor configures those nodes; list them under nodes:)`,
				`cluster.yaml:3: config: not used with runtime: external (rcluster neither starts nor configures those nodes; list them under nodes:)`,
			}},
		{"too few masters", "runtime: external\nreplicas: 1\nnodes:\n  - 10.0.0.1:6379\n  - 10.0.0.2:6379\n  - 10.0.0.3:6379\n",
			[]string{`cluster.yaml:3: nodes: 3 nodes with 1 replica per master give 1 master; Redis Cluster needs at least 3 (list at least 6 nodes or ask for fewer replicas)`}},
		{"bad items", "runtime: external\nnodes:\n  - 10.0.0.1\n  - {host: a, port: x}\n  - {host: b}\n  - {host: c, port: 1, bus: 2}\n  - 7\n",
			[]string{
				`cluster.yaml:3: nodes: item 1: "10.0.0.1" is not host:port`,
				`cluster.yaml:4: nodes: item 2: port: expected a port number, got "x"`,
				`cluster.yaml:5: nodes: item 3: a node needs both host and port`,
				`cluster.yaml:6: nodes: item 4: unknown key "bus" (a node has host and port)`,
				`cluster.yaml:7: nodes: item 5: expected {host: ..., port: ...} or "host:port", got 7`,
			}},
		{"bad values", "runtime: external\nnodes:\n  - 10.0.0.1:0\n  - {host: \"a b\", port: 1}\n  - 10.0.0.2:6379\n  - 10.0.0.2:6379\n  - 10.0.0.3:6379\n  - 10.0.0.4:6379\n",
			[]string{
				`cluster.yaml:3: nodes: item 1: port 0 is out of range 1..65535`,
				`cluster.yaml:4: nodes: item 2: host "a b" is neither an IP address nor a hostname`,
				`cluster.yaml:6: nodes: 10.0.0.2:6379 is listed twice (items 3 and 4)`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseErr(t, tt.yaml)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestDockerSpec(t *testing.T) {
	s := mustParse(t, "runtime: docker\nports: 7001-7006\nreplicas: 1\n", "/srv/cluster.yaml")
	if !s.IsDocker() || s.Image != DefaultImage {
		t.Fatalf("runtime %q image %q, want docker %s", s.Runtime, s.Image, DefaultImage)
	}
	if got := s.Addrs(); len(got) != 6 || got[0] != "127.0.0.1:7001" {
		t.Errorf("Addrs() = %v", got)
	}
	s = mustParse(t, "runtime: docker\nimage: rcluster-redis:local\n", "/srv/cluster.yaml")
	if s.Image != "rcluster-redis:local" {
		t.Errorf("image = %q", s.Image)
	}
}

func TestExternalSpec(t *testing.T) {
	s := mustParse(t, `runtime: external
replicas: 1
nodes:
  - {host: 10.0.0.1, port: 6379}
  - 10.0.0.2:6379
  - {host: redis-3.example, port: 6380}
  - "[fd00::4]:6379"
  - 10.0.0.5:6379
  - 10.0.0.6:6379
`, "/srv/cluster.yaml")
	want := []string{"10.0.0.1:6379", "10.0.0.2:6379", "redis-3.example:6380", "[fd00::4]:6379", "10.0.0.5:6379", "10.0.0.6:6379"}
	if got := s.Addrs(); !reflect.DeepEqual(got, want) {
		t.Errorf("Addrs() = %v, want %v", got, want)
	}
	if s.Masters() != 3 || !s.IsExternal() {
		t.Errorf("Masters() = %d, external %v", s.Masters(), s.IsExternal())
	}
	// Nodes returns a copy.
	s.Nodes()[0].Host = "x"
	if s.ExternalNodes[0].Host != "10.0.0.1" {
		t.Error("Nodes() aliases the spec's list")
	}
}

type fakeResolver map[string][]string

func (f fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	ips, ok := f[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []net.IPAddr
	for _, ip := range ips {
		out = append(out, net.IPAddr{IP: net.ParseIP(ip)})
	}
	return out, nil
}

func TestResolveHosts(t *testing.T) {
	spec := "runtime: external\nnodes: [a:6379, b:6379, 10.0.0.3:6379, a:6380]\n"
	s := mustParse(t, spec, "cluster.yaml")
	r := fakeResolver{"a": {"fd00::1", "10.0.0.1"}, "b": {"fd00::2"}}
	if err := s.ResolveHosts(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.1:6379", "[fd00::2]:6379", "10.0.0.3:6379", "10.0.0.1:6380"}
	if got := s.Addrs(); !reflect.DeepEqual(got, want) {
		t.Errorf("resolved Addrs() = %v, want %v", got, want)
	}

	s = mustParse(t, "runtime: external\nnodes:\n  - a:6379\n  - nope:6379\n  - 10.0.0.1:6379\n", "cluster.yaml")
	err := s.ResolveHosts(context.Background(), r)
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("ResolveHosts error %T %v, want *Error", err, err)
	}
	got := strings.Split(se.Error(), "\n")
	wantErr := []string{
		"cluster.yaml:4: nodes: cannot resolve nope: lookup nope: no such host",
		"cluster.yaml:5: nodes: items 1 and 3 are the same node 10.0.0.1:6379",
	}
	if !reflect.DeepEqual(got, wantErr) {
		t.Errorf("ResolveHosts problems:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(wantErr, "\n  "))
	}

	// Other runtimes are untouched (and never resolve anything).
	p := mustParse(t, "ports: 7001-7003\n", "cluster.yaml")
	if err := p.ResolveHosts(context.Background(), fakeResolver{}); err != nil {
		t.Errorf("process spec: %v", err)
	}
}

func TestNewExternal(t *testing.T) {
	nodes := []Node{{"10.0.0.1", 6379}, {"10.0.0.2", 6379}, {"10.0.0.3", 6379}}
	s, err := NewExternal("create", "/tmp/x", nodes, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Masters() != 3 || len(s.Addrs()) != 3 {
		t.Errorf("masters %d addrs %v", s.Masters(), s.Addrs())
	}
	if _, err := NewExternal("create", "/tmp/x", nodes, 1); err == nil ||
		!strings.Contains(err.Error(), "give 1 master; Redis Cluster needs at least 3") {
		t.Errorf("3 nodes with replicas 1: err = %v", err)
	}
}

func TestNetworkProblems(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"network without docker", "network: bridge\n",
			[]string{`cluster.yaml:1: network: only used with runtime: docker (runtime is process)`}},
		{"unknown network", "runtime: docker\nnetwork: overlay\n",
			[]string{`cluster.yaml:2: network: "overlay" is not one of host, bridge`}},
		{"network typo key", "runtime: docker\nnetwrok: bridge\n",
			[]string{`cluster.yaml:2: unknown key "netwrok" (did you mean "network"?)`}},
		{"network not a string", "runtime: docker\nnetwork: [bridge]\n",
			[]string{`cluster.yaml:2: network: expected a string, got a list`}},
		{"subnet without bridge", "runtime: docker\nsubnet: 172.30.7.0/24\n",
			[]string{`cluster.yaml:2: subnet: only used with network: bridge`}},
		{"subnet with host network", "runtime: docker\nnetwork: host\nsubnet: 172.30.7.0/24\n",
			[]string{`cluster.yaml:3: subnet: only used with network: bridge`}},
		{"every problem at once", "runtime: docker\nnetwork: bridge\nhost: 127.0.0.1\nsubnet: 172.30.7.1/24\nconfig:\n  cluster-announce-ip: 10.0.0.1\n  Protected-Mode: \"yes\"\ntls: {generate: true}\n",
			[]string{
				`cluster.yaml:3: host: not used with network: bridge (each node gets its own IP in the subnet, from .10 up; remove host:)`,
				`cluster.yaml:4: subnet: "172.30.7.1/24" has host bits set; write 172.30.7.0/24`,
				`cluster.yaml:6: config: "cluster-announce-ip" cannot be set with network: bridge: rcluster announces each node's container IP`,
				`cluster.yaml:7: config: "Protected-Mode" cannot be set with network: bridge: rcluster turns it off without auth: (clients come from the bridge's gateway, not loopback)`,
				`cluster.yaml:8: tls: generate is not supported with network: bridge yet (the generated certificate names host:, not the nodes' container IPs); give your own certificate valid for them, or use network: host`,
			}},
		{"subnet not a network", "runtime: docker\nnetwork: bridge\nsubnet: 172.30.7.0\n",
			[]string{`cluster.yaml:3: subnet: "172.30.7.0" is not an IPv4 network such as 172.30.7.0/24`}},
		{"subnet IPv6", "runtime: docker\nnetwork: bridge\nsubnet: fd00::/64\n",
			[]string{`cluster.yaml:3: subnet: "fd00::/64" is not IPv4 (the bridge network is IPv4 only)`}},
		{"subnet public", "runtime: docker\nnetwork: bridge\nsubnet: 8.8.8.0/24\n",
			[]string{`cluster.yaml:3: subnet: 8.8.8.0/24 is not a private network (use one inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)`}},
		{"subnet too small", "runtime: docker\nnetwork: bridge\nsubnet: 10.1.2.0/28\nports: 7001-7006\n",
			[]string{`cluster.yaml:3: subnet: 10.1.2.0/28 has room for 5 nodes (addresses from .10 up), the spec has 6; use a larger subnet`}},
		{"subnet far too small", "runtime: docker\nnetwork: bridge\nsubnet: 10.1.2.0/30\n",
			[]string{`cluster.yaml:3: subnet: 10.1.2.0/30 has room for 0 nodes (addresses from .10 up), the spec has 3; use a larger subnet`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseErr(t, tt.yaml)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestBridgeSpec(t *testing.T) {
	// Host networking (the default, or said) keeps the spec's host.
	for _, y := range []string{"runtime: docker\n", "runtime: docker\nnetwork: host\n"} {
		s := mustParse(t, y+"ports: 7001-7003\n", "/srv/a/cluster.yaml")
		if s.IsBridge() || s.Addrs()[0] != "127.0.0.1:7001" {
			t.Errorf("%q: bridge %v, Addrs %v", y, s.IsBridge(), s.Addrs())
		}
	}

	s := mustParse(t, "runtime: docker\nnetwork: bridge\nsubnet: 172.30.7.0/24\nports: 7001-7006\nreplicas: 1\n", "/srv/a/cluster.yaml")
	want := []string{"172.30.7.10:7001", "172.30.7.11:7002", "172.30.7.12:7003", "172.30.7.13:7004", "172.30.7.14:7005", "172.30.7.15:7006"}
	if got := s.Addrs(); !s.IsBridge() || !reflect.DeepEqual(got, want) {
		t.Errorf("bridge %v, Addrs() = %v, want %v", s.IsBridge(), got, want)
	}
	if gw := s.BridgeGateway().String(); gw != "172.30.7.1" {
		t.Errorf("gateway %s", gw)
	}
	// A /24 holds 245 nodes: .10 to .254.
	if _, err := Parse([]byte("runtime: docker\nnetwork: bridge\nsubnet: 10.9.0.0/24\nports: 7001-7245\n"), "c.yaml"); err != nil {
		t.Errorf("245 nodes in a /24: %v", err)
	}

	// Without subnet: a /24 of BridgePool, from the state dir, stable.
	a := mustParse(t, "runtime: docker\nnetwork: bridge\n", "/srv/a/cluster.yaml")
	again := mustParse(t, "runtime: docker\nnetwork: bridge\n", "/srv/a/cluster.yaml")
	sub := a.BridgeSubnet()
	if sub.Bits() != 24 || !BridgePool.Contains(sub.Addr()) || sub != sub.Masked() || again.BridgeSubnet() != sub {
		t.Fatalf("derived subnet %s (again %s), want a stable /24 inside %s", sub, again.BridgeSubnet(), BridgePool)
	}
	b := sub.Addr().As4()
	if ip, want := a.Nodes()[0].Host, netip.AddrFrom4([4]byte{b[0], b[1], b[2], 10}).String(); ip != want {
		t.Errorf("node 0 at %s in %s, want %s", ip, sub, want)
	}
	seen := map[string]bool{}
	for i := range 20 {
		d := mustParse(t, "runtime: docker\nnetwork: bridge\ndir: d"+strconv.Itoa(i)+"\n", "/srv/cluster.yaml")
		seen[d.BridgeSubnet().String()] = true
	}
	if len(seen) < 10 {
		t.Errorf("20 state dirs share %d subnets: %v", len(seen), seen)
	}
}
