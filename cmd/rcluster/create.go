package main

import (
	"errors"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rcluster/rcluster/internal/cluster"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/ui"
)

// createCommand forms a cluster on nodes rcluster did not start, like
// `redis-cli --cluster create` but deterministic, bounded and idempotent.
func createCommand(stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "create",
		Usage: "form a cluster on running nodes rcluster did not start (no spec, nothing saved)",
		UsageText: "rcluster create HOST:PORT... [--replicas N] [--timeout 60s] [--user U] [--password P]\n\n" +
			"The first len(nodes)/(replicas+1) nodes become masters; replicas are placed on other hosts\n" +
			"than their master when possible. Hostnames are resolved first (CLUSTER MEET needs IPs).\n" +
			"Running it again on the formed cluster is a no-op.\n\n" +
			"Example:\n   rcluster create 10.0.0.1:6379 10.0.0.2:6379 10.0.0.3:6379 10.0.0.4:6379 10.0.0.5:6379 10.0.0.6:6379 --replicas 1",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "replicas", Usage: "replicas per master"},
			&cli.DurationFlag{Name: "timeout", Value: 60 * time.Second, Usage: "give up after this long"},
			&cli.DurationFlag{Name: "call-timeout", Value: 2 * time.Second, Usage: "bound for each call to a node"},
			&cli.StringFlag{Name: "user", Usage: "ACL user"},
			&cli.StringFlag{Name: "password", EnvVars: []string{"REDISCLI_AUTH"}, Usage: "password (prefer env REDISCLI_AUTH)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only errors"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usagef("create: give the nodes as HOST:PORT arguments")
			}
			var nodes []spec.Node
			var errs []error
			for _, a := range c.Args().Slice() {
				n, err := spec.ParseNode(a)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				nodes = append(nodes, n)
			}
			if len(errs) > 0 {
				return usagef("create: %w", errors.Join(errs...))
			}
			if c.Int("replicas") < 0 {
				return usagef("create: --replicas must be 0 or more")
			}
			o := cluster.CreateOptions{
				Conn: redisconn.Options{Username: c.String("user"), Password: c.String("password"),
					Timeout: c.Duration("call-timeout")},
				Timeout: c.Duration("timeout"),
				Status:  ui.NewStatus(stderr),
				Log:     stderr,
			}
			if c.Bool("quiet") {
				o.Status, o.Log = ui.Quiet(), io.Discard
			}
			return cluster.Create(c.Context, nodes, c.Int("replicas"), o)
		},
	}
}
