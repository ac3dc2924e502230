package confgen

import (
	"fmt"

	"github.com/rcluster/rcluster/internal/spec"
)

// Paths inside a node's container, where runtime: docker mounts the node's
// host directories.
const (
	// ContainerConfDir is the spec's conf dir, mounted read-only.
	ContainerConfDir = "/etc/rcluster"
	// ContainerDataDir is the node's data dir (nodes.conf, AOF, RDB).
	ContainerDataDir = "/data"
	// ContainerLogDir is the spec's log dir.
	ContainerLogDir = "/var/log/rcluster"
	// ContainerPidFile is inside the container's own filesystem (/tmp is
	// writable for every user): nothing outside the container reads it.
	ContainerPidFile = "/tmp/redis.pid"
)

// ContainerConfFile is where node port's config appears in its container.
func ContainerConfFile(port int) string {
	return fmt.Sprintf("%s/redis_%d.conf", ContainerConfDir, port)
}

// ContainerLogFile is where node port logs inside its container (the host's
// s.LogFile(port)).
func ContainerLogFile(port int) string {
	return fmt.Sprintf("%s/redis_%d.log", ContainerLogDir, port)
}

// containerOverrides are the directives that differ for node n run in a
// container: it runs in the foreground (it is the container's process) and
// its paths are the container's.
//
// With network: bridge the node has a network namespace of its own: it
// binds every address in it (so it keeps listening while its container is
// disconnected, and answers on loopback inside the container) and
// announces its container IP, the address the other nodes and the host
// reach it at. Without a password protected mode is off: it would refuse
// every client that is not loopback inside the container, which is every
// client (the host connects from the bridge's gateway, replicas from their
// own IPs). The network is the cluster's own, internal, and publishes no
// port, so only this host and the cluster's containers reach the nodes,
// as with 127.0.0.1 under host networking. With auth: the password guards
// the nodes and protected mode stays on.
func containerOverrides(s *spec.Spec, n spec.Node) spec.Config {
	c := spec.Config{
		{Key: "daemonize", Value: "no"},
		{Key: "pidfile", Value: Quote(ContainerPidFile)},
		{Key: "logfile", Value: Quote(ContainerLogFile(n.Port))},
		{Key: "dir", Value: Quote(ContainerDataDir)},
	}
	if s.IsBridge() {
		c = append(c, spec.Directive{Key: "bind", Value: "0.0.0.0"}, spec.Directive{Key: "cluster-announce-ip", Value: n.Host})
		if s.Auth == nil || s.Auth.Password.IsZero() {
			c = append(c, spec.Directive{Key: "protected-mode", Value: "no"})
		}
	}
	return c
}

// RenderContainer returns the redis.conf of node n for running it in a
// container: the same config Render produces (template, spec directives),
// with daemonize no and the paths of the container's mounts, and with
// network: bridge the node's own network settings (containerOverrides).
func RenderContainer(s *spec.Spec, n spec.Node) ([]byte, error) {
	b, err := Render(s, n)
	if err != nil {
		return nil, err
	}
	return applyDirectives(b, containerOverrides(s, n), "# Set for running in a container:"), nil
}

// WriteContainer is Write for runtime: docker: it creates the same layout
// (conf, run, log, db/redis_<port>) and writes every node's RenderContainer
// config into s.ConfFile(port). It returns the written paths in node order.
func WriteContainer(s *spec.Spec) ([]string, error) {
	nodes := s.Nodes()
	confs := make([][]byte, len(nodes))
	for i, n := range nodes { // render everything before touching the disk
		var err error
		if confs[i], err = RenderContainer(s, n); err != nil {
			return nil, err
		}
	}
	return writeConfs(s, confs)
}
