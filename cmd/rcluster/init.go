package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/rcluster/rcluster/internal/spec"
)

// seedSpec is the commented cluster.yaml that init writes. With the default
// values it is byte for byte the repository's cluster.yaml (a test keeps
// them equal). The %s verbs are name, host, ports, replicas and name again.
const seedSpec = `# rcluster spec: the seed layout, the same as running rcluster with no spec.
# ` + "`rcluster up`" + ` reads ./cluster.yaml, or the file named by -f or $RCLUSTER_FILE.

# Identifies the cluster in state paths and messages (^[a-z0-9][a-z0-9_-]*$).
name: %s

# Address every node binds to and announces (an IP address).
host: %s

# Client ports, in order; each node's cluster bus port is port+10000.
# Also accepts a range string: ports: "7001-7006".
ports: %s

# Replicas per master. The first len(ports)/(replicas+1) ports become masters;
# Redis Cluster needs at least 3 masters.
replicas: %d

# State root (conf/, run/, log/, db/), relative to this file.
dir: ./.rcluster/%s

# redis-server binary, looked up in PATH.
# redis_server: redis-server

# Optional redis.conf template overriding the built-in one, relative to this file.
# template: ./redis.conf.tmpl

# Extra redis.conf directives for every node, in order. They replace the
# template's defaults of the same name; rcluster's own keys (port, bind, dir,
# daemonize, ...) cannot be set here.
config:
  cluster-node-timeout: 5000
`

// initSpec renders the seed spec. ports is either a range "7101-7106", a
// comma-separated list, or "" for 3*(replicas+1) ports from 7001.
func initSpec(name, host, ports string, replicas int) (string, error) {
	var yamlPorts string
	switch {
	case ports == "":
		n := 3 * (replicas + 1)
		list := make([]string, n)
		for i := range list {
			list[i] = strconv.Itoa(7001 + i)
		}
		yamlPorts = "[" + strings.Join(list, ", ") + "]"
	case strings.Contains(ports, "-"):
		yamlPorts = strconv.Quote(strings.TrimSpace(ports))
	default:
		var list []string
		for _, p := range strings.Split(ports, ",") {
			p = strings.TrimSpace(p)
			if _, err := strconv.Atoi(p); err != nil {
				return "", usagef("--ports %q: want a range like 7001-7006 or a list like 7001,7002,7003", ports)
			}
			list = append(list, p)
		}
		yamlPorts = "[" + strings.Join(list, ", ") + "]"
	}
	if strings.Contains(host, ":") { // an IPv6 address: quote it for YAML
		host = strconv.Quote(host)
	}
	return fmt.Sprintf(seedSpec, name, host, yamlPorts, replicas, name), nil
}

func initCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "write a commented cluster.yaml to start from",
		UsageText: "rcluster init [-f cluster.yaml] [--force] [--name dev] [--ports 7001-7003] [--replicas 0] [--host 127.0.0.1]\n\n" +
			"Writes the seed layout (3 masters on 127.0.0.1:7001-7003), or the name, ports\n" +
			"and replicas given, and refuses to overwrite an existing file without --force.\n\n" +
			"Examples:\n" +
			"   rcluster init && rcluster up\n" +
			"   rcluster init -f shop.yaml --name shop --ports 7101-7106 --replicas 1\n" +
			"   rcluster init -f -   # print it instead",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Value: "cluster.yaml", EnvVars: []string{spec.EnvFile},
				Usage: "write the spec to `FILE` (\"-\" for stdout)"},
			&cli.BoolFlag{Name: "force", Usage: "overwrite FILE if it exists"},
			&cli.StringFlag{Name: "name", Value: "dev", Usage: "cluster `NAME` (also names its state dir ./.rcluster/NAME)"},
			&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "`IP` address the nodes bind to and announce"},
			&cli.StringFlag{Name: "ports", Usage: "client `PORTS`: a range 7001-7006 or a list 7001,7002,7003 (default: 3 masters and their replicas from 7001)"},
			&cli.IntFlag{Name: "replicas", Value: 0, Usage: "replicas per master"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("init takes no arguments, got %q (use -f FILE)", c.Args().First())
			}
			text, err := initSpec(c.String("name"), c.String("host"), c.String("ports"), c.Int("replicas"))
			if err != nil {
				return err
			}
			path := c.String("file")
			display := path
			if path == "-" {
				display = "cluster.yaml"
			}
			s, err := spec.Parse([]byte(text), display)
			if err != nil {
				return err
			}
			if path == "-" {
				_, err := io.WriteString(stdout, text)
				return err
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if c.Bool("force") {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			f, err := os.OpenFile(path, flags, 0o644)
			if errors.Is(err, fs.ErrExist) {
				return usagef("%s already exists; use --force to overwrite it", path)
			}
			if err != nil {
				return fmt.Errorf("init: %w", err)
			}
			if _, err := io.WriteString(f, text); err != nil {
				f.Close()
				return fmt.Errorf("write %s: %w", path, err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
			if verbosity(c) > levelQuiet {
				fmt.Fprintf(stderr, "Wrote %s: cluster %q, %d masters with %s each on %s, %s.\nNext: rcluster up%s\n",
					path, s.Name, s.Masters(), plural(s.Replicas, "replica"), s.Host, portSummary(s.Ports), fileArg(path))
			}
			return nil
		},
	}
}

// fileArg is " -f PATH" unless path is the default ./cluster.yaml.
func fileArg(path string) string {
	if path == "cluster.yaml" || path == "./cluster.yaml" {
		return ""
	}
	return " -f " + shellQuoteIfNeeded(path)
}

func shellQuoteIfNeeded(s string) string {
	if s != "" && dotenvSafe(s) && !strings.ContainsAny(s, "?&[]") {
		return s
	}
	return shellQuote(s)
}

// portSummary is "ports 7001-7003" for a contiguous ascending block, else
// "ports 7001,7005,7003".
func portSummary(ports []int) string {
	return "ports " + portList(ports)
}

func portList(ports []int) string {
	if len(ports) == 0 {
		return "-"
	}
	contiguous := true
	for i := 1; i < len(ports); i++ {
		if ports[i] != ports[i-1]+1 {
			contiguous = false
		}
	}
	if contiguous && len(ports) > 1 {
		return fmt.Sprintf("%d-%d", ports[0], ports[len(ports)-1])
	}
	list := make([]string, len(ports))
	for i, p := range ports {
		list[i] = strconv.Itoa(p)
	}
	return strings.Join(list, ",")
}
