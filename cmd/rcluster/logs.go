package main

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/rcluster/rcluster/internal/cluster"
	"github.com/rcluster/rcluster/internal/ui"
)

// logsCommand is `rcluster logs [PORT...] [-f] [--tail N|all]`. Here -f is
// --follow as in docker compose; the spec is given with --file only.
func logsCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "show the nodes' redis logs, each line prefixed with its port",
		ArgsUsage: "[PORT...]",
		UsageText: "rcluster logs [--file cluster.yaml] [PORT...] [-f] [--tail N|all]\n\n" +
			"Examples:\n   rcluster logs            # the last lines of every node, merged by time\n" +
			"   rcluster logs 7002 -f    # follow one node until Ctrl-C",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "file", EnvVars: []string{"RCLUSTER_FILE"}, Usage: "cluster spec `FILE` (-f means --follow here)"},
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new lines until interrupted"},
			&cli.StringFlag{Name: "tail", Aliases: []string{"n"}, Value: "100", Usage: "lines to show per node from the end of its log, or \"all\""},
			&cli.BoolFlag{Name: "no-color", Usage: "never colour the prefixes"},
		},
		Action: func(c *cli.Context) error {
			// urfave/cli stops at the first argument; `logs 7001 -f` is the
			// natural order, so flags after PORT are parsed here.
			ports, err := parseLogsArgs(c)
			if err != nil {
				return err
			}
			tail := -1
			if t := c.String("tail"); t != "all" {
				n, err := strconv.Atoi(t)
				if err != nil || n < 0 {
					return usagef("--tail: want a number of lines or \"all\", got %q", t)
				}
				tail = n
			}
			cl, err := newCluster(c, stderr)
			if err != nil {
				return err
			}
			err = cl.Logs(c.Context, stdout, cluster.LogOptions{
				Ports: ports, Tail: tail, Follow: c.Bool("follow"),
				Color: !c.Bool("no-color") && ui.IsTerminal(stdout) && os.Getenv("NO_COLOR") == "",
			})
			var pe *cluster.PortError
			if errors.As(err, &pe) {
				return &UsageError{err}
			}
			return err
		},
	}
}

// parsePortArg accepts "7001" or "127.0.0.1:7001".
func parsePortArg(a string) (int, error) {
	s := a
	if strings.Contains(a, ":") {
		_, p, err := net.SplitHostPort(a)
		if err != nil {
			return 0, usagef("%q is not a port or HOST:PORT", a)
		}
		s = p
	}
	p, err := strconv.Atoi(s)
	if err != nil || p <= 0 || p > 65535 {
		return 0, usagef("%q is not a port or HOST:PORT", a)
	}
	return p, nil
}

// parseLogsArgs splits what urfave/cli left as arguments into ports and
// the flags given after the first port, which it sets on c.
func parseLogsArgs(c *cli.Context) ([]int, error) {
	args := c.Args().Slice()
	var ports []int
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			p, err := parsePortArg(a)
			if err != nil {
				return nil, err
			}
			ports = append(ports, p)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "f", "follow", "no-color":
			if name == "f" {
				name = "follow"
			}
			if hasValue {
				return nil, usagef("flag %s takes no value", a)
			}
			value = "true"
		case "n", "tail", "file":
			if name == "n" {
				name = "tail"
			}
			if !hasValue {
				if i+1 >= len(args) {
					return nil, usagef("flag %s needs a value", a)
				}
				i++
				value = args[i]
			}
		default:
			return nil, usagef("logs: unknown flag %s", a)
		}
		if err := c.Set(name, value); err != nil {
			return nil, usagef("flag %s: %v", a, err)
		}
	}
	return ports, nil
}
