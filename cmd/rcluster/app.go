package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rcluster/rcluster/internal/cluster"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/ui"
	"github.com/rcluster/rcluster/internal/verify"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// UsageError is a command-line mistake: exit code 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usagef(format string, a ...any) error { return &UsageError{fmt.Errorf(format, a...)} }

// errReported means the command already printed why it failed (exit 1).
var errReported = errors.New("failed")

// ExitCode maps an error from Run to the process exit code and prints it:
// 0 success, 2 usage or spec errors, 1 anything else.
func ExitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	if !errors.Is(err, errReported) {
		fmt.Fprintf(stderr, "rcluster: error: %v\n", err)
	}
	var ue *UsageError
	var se *spec.Error
	if errors.As(err, &ue) || errors.As(err, &se) {
		return 2
	}
	return 1
}

// Run is the whole CLI: parse args (args[0] is the program name), run the
// command, return its error. It never exits the process.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fileFlag := &cli.StringFlag{Name: "file", Aliases: []string{"f"}, EnvVars: []string{"RCLUSTER_FILE"},
		Usage: "cluster spec `FILE` (default ./cluster.yaml if present, else the built-in 3-master spec)"}
	quietFlag := &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only errors"}
	app := &cli.App{
		Name:                 "rcluster",
		Usage:                "a running, verified Redis Cluster from a YAML file, in seconds",
		Version:              version,
		Writer:               stdout,
		ErrWriter:            stderr,
		Suggest:              true,
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return &UsageError{err}
		},
		CommandNotFound: func(c *cli.Context, name string) {
			// Recorded as a usage error by the Action below.
		},
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("unknown command %q (see `rcluster --help`)", c.Args().First())
			}
			return usagef("no command given (see `rcluster --help`)")
		},
		Commands: []*cli.Command{
			{
				Name:      "up",
				Usage:     "start the nodes and form the cluster; returns when it is usable",
				UsageText: "rcluster up [-f cluster.yaml] [--timeout 60s]\n\nExample:\n   rcluster up -f cluster.yaml && rcluster verify",
				Flags: []cli.Flag{fileFlag, quietFlag,
					&cli.DurationFlag{Name: "timeout", Value: 60 * time.Second, Usage: "give up (and stop what this run started) after this long"},
					&cli.BoolFlag{Name: "retain", Usage: "on failure, keep the nodes this run started (for debugging)"},
				},
				Action: func(c *cli.Context) error {
					cl, err := newCluster(c, stderr)
					if err != nil {
						return err
					}
					return cl.Up(c.Context, cluster.UpOptions{Timeout: c.Duration("timeout"), Retain: c.Bool("retain")})
				},
			},
			{
				Name:      "down",
				Usage:     "stop every node gracefully (data kept unless --purge)",
				UsageText: "rcluster down [-f cluster.yaml] [--purge]",
				Flags: []cli.Flag{fileFlag, quietFlag,
					&cli.BoolFlag{Name: "purge", Usage: "also delete the spec's state directory (all data)"},
				},
				Action: func(c *cli.Context) error {
					cl, err := newCluster(c, stderr)
					if err != nil {
						return err
					}
					return cl.Down(c.Context, c.Bool("purge"))
				},
			},
			{
				Name:      "status",
				Usage:     "one line per node: pid, role, master, slots, state",
				UsageText: "rcluster status [-f cluster.yaml] [--json]",
				Flags:     []cli.Flag{fileFlag, &cli.BoolFlag{Name: "json", Usage: "machine-readable output"}},
				Action: func(c *cli.Context) error {
					cl, err := newCluster(c, stderr)
					if err != nil {
						return err
					}
					sts := cl.NodeStatuses(c.Context)
					if c.Bool("json") {
						enc := json.NewEncoder(stdout)
						enc.SetIndent("", "  ")
						return enc.Encode(map[string]any{"name": cl.Spec.Name, "nodes": sts})
					}
					return cluster.WriteStatusTable(stdout, sts)
				},
			},
			verifyCommand(fileFlag, stdout, stderr),
			createCommand(stderr),
		},
	}
	for _, c := range app.Commands {
		c.OnUsageError = app.OnUsageError
	}
	return app.RunContext(ctx, args)
}

func loadSpec(c *cli.Context) (*spec.Spec, error) {
	s, err := spec.Resolve(c.String("file"), os.Getenv)
	if err == nil {
		err = s.ResolveHosts(c.Context, nil) // runtime external: MEET needs IPs
	}
	return s, err
}

func newCluster(c *cli.Context, stderr io.Writer) (*cluster.Cluster, error) {
	s, err := loadSpec(c)
	if err != nil {
		return nil, err
	}
	st := ui.NewStatus(stderr)
	log := io.Discard
	if c.Bool("quiet") {
		st = ui.Quiet()
	} else {
		log = stderr
	}
	return &cluster.Cluster{Spec: s, Conn: redisconn.Options{}, Status: st, Log: log}, nil
}

func verifyCommand(fileFlag cli.Flag, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "check the cluster's health and exercise client operations (exit 0 healthy, 1 not)",
		UsageText: "rcluster verify [-f cluster.yaml | --addr HOST:PORT] [--wait 30s] [--json]\n\n" +
			"Examples:\n   rcluster verify\n   rcluster verify --addr 127.0.0.1:7001 --json",
		Flags: []cli.Flag{fileFlag,
			&cli.StringSliceFlag{Name: "addr", Usage: "discover the cluster from this node (repeatable) instead of a spec"},
			&cli.DurationFlag{Name: "wait", Usage: "re-check until healthy or this long has passed"},
			&cli.DurationFlag{Name: "timeout", Value: 2 * time.Second, Usage: "bound for each call to a node"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON report on stdout"},
			&cli.BoolFlag{Name: "read-only", Usage: "run only checks that write nothing"},
			&cli.StringFlag{Name: "user", Usage: "ACL user"},
			&cli.StringFlag{Name: "password", EnvVars: []string{"REDISCLI_AUTH"}, Usage: "password (prefer env REDISCLI_AUTH)"},
		},
		Action: func(c *cli.Context) error {
			o := verify.Options{
				Conn:     redisconn.Options{Username: c.String("user"), Password: c.String("password"), Timeout: c.Duration("timeout")},
				ReadOnly: c.Bool("read-only"),
			}
			addrs := c.StringSlice("addr")
			switch {
			case len(addrs) > 0 && c.IsSet("file"):
				return usagef("give either -f FILE or --addr, not both")
			case len(addrs) > 0:
				o.Seeds = addrs
				o.Expect.Replicas = -1
			default:
				s, err := loadSpec(c)
				if err != nil {
					return err
				}
				o.Nodes = s.Addrs()
				o.Expect = verify.Expect{Nodes: len(s.Nodes()), Masters: s.Masters(), Replicas: s.Replicas}
			}
			rep := runVerify(c.Context, o, c.Duration("wait"), c.Bool("json"), stderr)
			if c.Bool("json") {
				if err := writeJSONReport(stdout, rep); err != nil {
					return err
				}
			}
			if !rep.OK {
				fmt.Fprintf(stderr, "verify: %d of %d checks failed\n", len(rep.Failed()), len(rep.Checks))
				return errReported
			}
			return nil
		},
	}
}

// runVerify runs the checks once, or with --wait until they pass or the
// wait is over (polling with backoff), printing the final report's lines.
func runVerify(ctx context.Context, o verify.Options, wait time.Duration, quietLines bool, stderr io.Writer) verify.Report {
	print := func(r verify.Result) {
		if quietLines {
			return
		}
		mark := "✓"
		if !r.OK {
			mark = "✗"
		}
		line := fmt.Sprintf(" %s %s (%s)", mark, r.Name, r.Duration.Round(time.Millisecond))
		if r.Detail != "" {
			line += ": " + r.Detail
		}
		fmt.Fprintln(stderr, line)
	}
	if wait <= 0 {
		return verify.Run(ctx, o, print)
	}
	deadline := time.Now().Add(wait)
	delay := 100 * time.Millisecond
	for {
		rep := verify.Run(ctx, o, nil)
		if rep.OK || time.Now().Add(delay).After(deadline) || ctx.Err() != nil {
			for _, r := range rep.Checks {
				print(r)
			}
			return rep
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		if delay < time.Second {
			delay *= 2
		}
	}
}

type jsonCheck struct {
	Name       string  `json:"name"`
	OK         bool    `json:"ok"`
	DurationMS float64 `json:"duration_ms"`
	Detail     string  `json:"detail,omitempty"`
}

func writeJSONReport(w io.Writer, rep verify.Report) error {
	out := struct {
		OK     bool        `json:"ok"`
		Checks []jsonCheck `json:"checks"`
	}{OK: rep.OK, Checks: []jsonCheck{}}
	for _, c := range rep.Checks {
		out.Checks = append(out.Checks, jsonCheck{Name: c.Name, OK: c.OK,
			DurationMS: float64(c.Duration.Microseconds()) / 1000, Detail: c.Detail})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
