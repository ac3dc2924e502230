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

// containerOverrides are the directives that differ for a node run in a
// container: it runs in the foreground (it is the container's process) and
// its paths are the container's.
func containerOverrides(port int) spec.Config {
	return spec.Config{
		{Key: "daemonize", Value: "no"},
		{Key: "pidfile", Value: Quote(ContainerPidFile)},
		{Key: "logfile", Value: Quote(ContainerLogFile(port))},
		{Key: "dir", Value: Quote(ContainerDataDir)},
	}
}

// RenderContainer returns the redis.conf of node n for running it in a
// container: the same config Render produces (template, spec directives),
// with daemonize no and the paths of the container's mounts.
func RenderContainer(s *spec.Spec, n spec.Node) ([]byte, error) {
	b, err := Render(s, n)
	if err != nil {
		return nil, err
	}
	return applyDirectives(b, containerOverrides(n.Port), "# Set for running in a container:"), nil
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
