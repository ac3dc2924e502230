package main

import (
	"errors"
	"flag"
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
		UsageText: "rcluster create HOST:PORT... [--replicas N] [--timeout 60s] [--user U] [--password-file F | env REDISCLI_AUTH]\n\n" +
			"The first len(nodes)/(replicas+1) nodes become masters; replicas are placed on other hosts\n" +
			"than their master when possible. Hostnames are resolved first (CLUSTER MEET needs IPs).\n" +
			"Running it again on the formed cluster is a no-op.\n\n" +
			"Example:\n   rcluster create 10.0.0.1:6379 10.0.0.2:6379 10.0.0.3:6379 10.0.0.4:6379 10.0.0.5:6379 10.0.0.6:6379 --replicas 1",
		Flags: append([]cli.Flag{
			&cli.IntFlag{Name: "replicas", Usage: "replicas per master"},
			&cli.DurationFlag{Name: "timeout", Value: 60 * time.Second, Usage: "give up after this long"},
			&cli.DurationFlag{Name: "call-timeout", Value: 2 * time.Second, Usage: "bound for each call to a node"},
			&cli.StringFlag{Name: "user", Usage: "ACL user"},
		}, passwordFlags()...),
		Action: func(c *cli.Context) error {
			o := createFlags{replicas: c.Int("replicas"), timeout: c.Duration("timeout"), callTimeout: c.Duration("call-timeout"),
				user: c.String("user"), password: c.String("password"), passwordFile: c.String("password-file"),
				quiet: verbosity(c) == levelQuiet}
			args, err := o.parseInterspersed(c.Args().Slice())
			if err != nil {
				return usagef("create: %w", err)
			}
			if o.password, err = resolvePassword(o.passwordFile, o.password, stderr); err != nil {
				return err
			}
			if len(args) == 0 {
				return usagef("create: give the nodes as HOST:PORT arguments")
			}
			var nodes []spec.Node
			var errs []error
			for _, a := range args {
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
			if o.replicas < 0 {
				return usagef("create: --replicas must be 0 or more")
			}
			co := cluster.CreateOptions{
				Conn:    redisconn.Options{Username: o.user, Password: o.password, Timeout: o.callTimeout},
				Timeout: o.timeout,
				Status:  ui.NewStatus(stderr),
				Log:     detailWriter(c, stderr),
			}
			if o.quiet {
				co.Status, co.Log = ui.Quiet(), io.Discard
			}
			return cluster.Create(c.Context, nodes, o.replicas, co)
		},
	}
}

// createFlags are create's flag values. urfave/cli stops parsing flags at
// the first argument, but `rcluster create A B C --replicas 1` is how
// redis-cli users write it: parseInterspersed reads flags among the
// arguments too.
type createFlags struct {
	replicas             int
	timeout, callTimeout time.Duration
	user, password       string
	passwordFile         string
	quiet                bool
}

// parseInterspersed applies the flags found among args (values already
// parsed are the defaults) and returns the other arguments in order.
func (o *createFlags) parseInterspersed(args []string) ([]string, error) {
	fs := flag.NewFlagSet("create", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&o.replicas, "replicas", o.replicas, "")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "")
	fs.DurationVar(&o.callTimeout, "call-timeout", o.callTimeout, "")
	fs.StringVar(&o.user, "user", o.user, "")
	fs.StringVar(&o.password, "password", o.password, "")
	fs.StringVar(&o.passwordFile, "password-file", o.passwordFile, "")
	fs.BoolVar(&o.quiet, "quiet", o.quiet, "")
	fs.BoolVar(&o.quiet, "q", o.quiet, "")
	var rest []string
	for range len(args) + 1 { // each round consumes at least one argument
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return rest, nil
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
	return rest, nil
}
