package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rcluster/rcluster/internal/cluster"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/statedir"
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
	var pe *statedir.PurgeRefusedError
	if errors.As(err, &ue) || errors.As(err, &se) || errors.As(err, &pe) {
		return 2
	}
	return 1
}

// notHealthy is status's error (exit code 1) when a node is not ok.
func notHealthy(name string, nodes int, problems []string) error {
	total, more := len(problems), ""
	if total > 5 {
		more = fmt.Sprintf("; and %d more", total-5)
		problems = problems[:5]
	}
	return fmt.Errorf("cluster %q is not healthy: %d of %d nodes not ok: %s%s",
		name, total, nodes, strings.Join(problems, "; "), more)
}

// Run is the whole CLI: parse args (args[0] is the program name), run the
// command, return its error. It never exits the process.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fileFlag := &cli.StringFlag{Name: "file", Aliases: []string{"f"}, EnvVars: []string{"RCLUSTER_FILE"},
		Usage: "cluster spec `FILE` (default ./cluster.yaml if present, else the built-in 3-master spec)"}
	app := &cli.App{
		Name:                 "rcluster",
		Usage:                "a running, verified Redis Cluster from a YAML file, in seconds",
		Version:              versionString(),
		Writer:               stdout,
		ErrWriter:            stderr,
		Suggest:              true,
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		Flags:                verbosityFlags(),
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return &UsageError{flagSuggestion(nil, c.App, err)}
		},
		CommandNotFound: func(c *cli.Context, name string) {
			// Recorded as a usage error by the Action below.
		},
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return unknownCommand(c.App.Commands, c.Args().First())
			}
			return usagef("no command given (see `rcluster --help`)")
		},
		Commands: []*cli.Command{
			{
				Name:      "up",
				Usage:     "start the nodes and form the cluster; returns when it is usable",
				UsageText: "rcluster up [-f cluster.yaml] [--timeout 60s]\n\nExample:\n   rcluster up -f cluster.yaml && rcluster verify",
				Flags: []cli.Flag{fileFlag,
					&cli.DurationFlag{Name: "timeout", Value: 60 * time.Second, Usage: "give up (and stop what this run started) after this long"},
					&cli.BoolFlag{Name: "retain", Usage: "on failure, keep the nodes this run started (for debugging)"},
					&cli.BoolFlag{Name: "dry-run", Usage: "print the slot plan and configs (as `rcluster render`) and start nothing"},
				},
				Action: func(c *cli.Context) error {
					if c.Bool("dry-run") {
						s, err := loadSpec(c)
						if err != nil {
							return err
						}
						return renderAll(stdout, s, true, false)
					}
					cl, err := newCluster(c, stderr)
					if err != nil {
						return err
					}
					return cl.Up(c.Context, cluster.UpOptions{Timeout: c.Duration("timeout"), Retain: c.Bool("retain")})
				},
			},
			{
				Name:  "down",
				Usage: "stop every node gracefully (data kept unless --purge)",
				UsageText: "rcluster down [-f cluster.yaml] [--purge] [--timeout 2m]\n\n" +
					"--purge deletes what rcluster created in the state dir (configs, data, logs);\n" +
					"files it did not create stay, and so does the dir when any remain.\n\n" +
					"Examples:\n   rcluster down\n   rcluster down --purge   # also delete the data",
				Flags: []cli.Flag{fileFlag,
					&cli.BoolFlag{Name: "purge", Usage: "also delete what rcluster created in the state directory (all data)"},
					&cli.DurationFlag{Name: "timeout", Value: 2 * time.Minute, Usage: "bound for the whole of down"},
				},
				Action: func(c *cli.Context) error {
					cl, err := newCluster(c, stderr)
					if err != nil {
						return err
					}
					return cl.Down(c.Context, cluster.DownOptions{Purge: c.Bool("purge"), Timeout: c.Duration("timeout")})
				},
			},
			{
				Name:      "status",
				Usage:     "one line per node: pid, role, master, slots, state (exit 1 unless healthy)",
				UsageText: "rcluster status [-f cluster.yaml] [--json]\n\nExits 0 when every node runs, answers and reports cluster_state:ok and every\nreplica's link is up; 1 otherwise (the table or JSON is printed either way).\n\nExamples:\n   rcluster status\n   rcluster status --json | jq '.nodes[] | select(.role == \"master\") | .addr'",
				Flags:     []cli.Flag{fileFlag, &cli.BoolFlag{Name: "json", Usage: "machine-readable output"}},
				Action: func(c *cli.Context) error {
					cl, err := newCluster(c, stderr)
					if err != nil {
						return err
					}
					sts := cl.NodeStatuses(c.Context)
					problems := cluster.Problems(sts)
					open, _ := cl.OpenSlots(c.Context) // what is being migrated, if any
					var err2 error
					if c.Bool("json") {
						enc := json.NewEncoder(stdout)
						enc.SetIndent("", "  ")
						// "problems": [] rather than null when healthy.
						err2 = enc.Encode(map[string]any{"name": cl.Spec.Name, "healthy": len(problems) == 0,
							"problems": append([]string{}, problems...), "nodes": sts, "open_slots": open})
					} else {
						err2 = cluster.WriteStatusTable(stdout, sts)
						for _, o := range open {
							fmt.Fprintf(stdout, "migrating slot %d: %s -> %s (keys: %d left on the source, %d on the target)\n",
								o.Slot, o.Source.Addr, o.Target.Addr, o.SourceKeys, o.TargetKeys)
						}
					}
					if err2 != nil || len(problems) == 0 {
						return err2
					}
					return notHealthy(cl.Spec.Name, len(sts), problems)
				},
			},
			verifyCommand(fileFlag, stdout, stderr),
			failoverCommand(fileFlag, stdout, stderr),
			nodeCommand(fileFlag, stdout, stderr),
			resetCommand(fileFlag, stdout, stderr),
			migrateCommand(fileFlag, stdout, stderr),
			reshardCommand(fileFlag, stdout, stderr),
			rebalanceCommand(fileFlag, stdout, stderr),
			logsCommand(stdout, stderr),
			eventsCommand(fileFlag, stdout, stderr),
			envCommand(fileFlag, stdout, stderr),
			initCommand(stdout, stderr),
			renderCommand(fileFlag, stdout),
			lsCommand(stdout, stderr),
			completionCommand(stdout),
			createCommand(stderr),
		},
	}
	for _, c := range app.Commands {
		c.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
			return &UsageError{flagSuggestion(c, nil, err)}
		}
		c.Flags = append(c.Flags, verbosityFlags()...)
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
	if verbosity(c) == levelQuiet {
		st = ui.Quiet()
	}
	conn, err := s.ConnOptions()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Generated TLS certificates appear on the first up; anything
		// else is a real problem.
		return nil, err
	}
	return &cluster.Cluster{Spec: s, Conn: conn, Status: st, Log: detailWriter(c, stderr)}, nil
}

func verifyCommand(fileFlag cli.Flag, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "check the cluster's health and exercise client operations (exit 0 healthy, 1 not)",
		UsageText: "rcluster verify [-f cluster.yaml | --addr HOST:PORT [--tls --cacert ca.crt --cert c.crt --key c.key]] [--wait 30s] [--json] [--junit FILE]\n\n" +
			"Examples:\n   rcluster verify\n   rcluster verify --addr 127.0.0.1:7001 --json\n   rcluster verify --wait 30s --junit verify-report.xml\n" +
			"   REDISCLI_AUTH=pw rcluster verify --addr 127.0.0.1:7001 --tls --cacert state/tls/ca.crt --cert state/tls/node.crt --key state/tls/node.key",
		Flags: append([]cli.Flag{fileFlag,
			&cli.StringSliceFlag{Name: "addr", Usage: "discover the cluster from this node (repeatable) instead of a spec"},
			&cli.DurationFlag{Name: "wait", Usage: "re-check until healthy or this long has passed"},
			&cli.DurationFlag{Name: "timeout", Value: 2 * time.Second, Usage: "bound for each call to a node"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON report on stdout"},
			&cli.StringFlag{Name: "junit", Usage: "also write a JUnit XML report to `FILE` (one testcase per check)"},
			&cli.BoolFlag{Name: "read-only", Usage: "run only checks that write nothing"},
			&cli.StringFlag{Name: "user", Usage: "ACL user"},
			&cli.BoolFlag{Name: "tls", Usage: "connect with TLS (implied by --cacert, --cert, --key, --sni)"},
			&cli.StringFlag{Name: "cacert", Usage: "CA certificate `FILE` to verify nodes with (default: system roots)"},
			&cli.StringFlag{Name: "cert", Usage: "client certificate `FILE`"},
			&cli.StringFlag{Name: "key", Usage: "client private key `FILE`"},
			&cli.StringFlag{Name: "sni", Usage: "server `NAME` to request and verify (default: each node's address)"},
		}, passwordFlags()...),
		Action: func(c *cli.Context) error {
			pw, err := password(c, stderr)
			if err != nil {
				return err
			}
			o := verify.Options{
				Conn:     redisconn.Options{Username: c.String("user"), Password: pw, Timeout: c.Duration("timeout")},
				ReadOnly: c.Bool("read-only"),
			}
			if c.Bool("tls") || c.IsSet("cacert") || c.IsSet("cert") || c.IsSet("key") || c.IsSet("sni") {
				if c.IsSet("cert") != c.IsSet("key") {
					return usagef("--cert and --key go together")
				}
				cfg, err := redisconn.TLSFiles{CACert: c.String("cacert"), Cert: c.String("cert"), Key: c.String("key"), ServerName: c.String("sni")}.Config()
				if err != nil {
					return err
				}
				o.Conn.TLSConfig = cfg
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
				conn, err := s.ConnOptions()
				if err != nil {
					return err
				}
				conn.Timeout = o.Conn.Timeout
				if c.IsSet("user") || pw != "" {
					conn.Username, conn.Password = o.Conn.Username, o.Conn.Password
				}
				if o.Conn.TLSConfig != nil {
					conn.TLSConfig = o.Conn.TLSConfig
				}
				o.Conn = conn
				o.Nodes = s.Addrs()
				o.Expect = verify.Expect{Nodes: len(s.Nodes()), Masters: s.Masters(), Replicas: s.Replicas}
			}
			started := time.Now()
			lines := verifyLines(c, stderr)
			rep := runVerify(c.Context, o, c.Duration("wait"), lines)
			if path := c.String("junit"); path != "" {
				if err := writeJUnitFile(path, rep, started); err != nil {
					return err
				}
			}
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

// runVerify runs the checks once (streaming each line), or with --wait
// until they pass or the wait is over, printing the final report's lines.
func runVerify(ctx context.Context, o verify.Options, wait time.Duration, print func(verify.Result)) verify.Report {
	if wait <= 0 {
		return verify.Run(ctx, o, print)
	}
	rep := verify.RunWait(ctx, o, wait)
	for _, r := range rep.Checks {
		print(r)
	}
	return rep
}

type jsonCheck struct {
	Name       string  `json:"name"`
	OK         bool    `json:"ok"`
	DurationMS float64 `json:"duration_ms"`
	Detail     string  `json:"detail,omitempty"`
	Skipped    bool    `json:"skipped,omitempty"`
}

func writeJSONReport(w io.Writer, rep verify.Report) error {
	out := struct {
		OK     bool              `json:"ok"`
		Checks []jsonCheck       `json:"checks"`
		Open   []verify.OpenSlot `json:"open_slots"`
	}{OK: rep.OK, Checks: []jsonCheck{}, Open: rep.Open}
	if out.Open == nil {
		out.Open = []verify.OpenSlot{}
	}
	for _, c := range rep.Checks {
		out.Checks = append(out.Checks, jsonCheck{Name: c.Name, OK: c.OK,
			DurationMS: float64(c.Duration.Microseconds()) / 1000, Detail: c.Detail, Skipped: c.Skipped})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
