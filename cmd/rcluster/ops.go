package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rcluster/rcluster/internal/cluster"
	"github.com/rcluster/rcluster/internal/failover"
	"github.com/rcluster/rcluster/internal/provider"
)

// Commands that change a running cluster: failover, node, reset. Each is
// one library call (internal/cluster) that returns when every node agrees.

// opError maps an operation's error to the exit codes: unknown nodes and
// what rcluster may not do to nodes it did not start are usage errors (2),
// anything else a failure (1).
func opError(err error) error {
	var ue *cluster.UnknownNodeError
	if errors.As(err, &ue) || errors.Is(err, provider.ErrNotOurs) {
		return &UsageError{err}
	}
	return err
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func failoverCommand(fileFlag cli.Flag, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "failover",
		Usage: "promote a replica of a shard; returns when every node agrees (graceful: no acknowledged write lost)",
		UsageText: "rcluster failover (NODE | --slot N | --key K) [--force | --takeover] [--timeout 30s] [--json]\n\n" +
			"NODE is a port, host:port or node id: a master has its best replica promoted (link up,\n" +
			"most data), a replica is promoted itself. Graceful by default (CLUSTER FAILOVER: the\n" +
			"master pauses writes until the replica caught up, so no acknowledged write is lost);\n" +
			"--force skips the master (it may be down), --takeover skips the vote. It returns only\n" +
			"when every reachable node agrees the new master owns the shard's slots, the old master\n" +
			"follows it with its link up, and the new master accepts writes.\n\n" +
			"Examples:\n" +
			"   rcluster failover 7001                 # promote 7001's best replica\n" +
			"   rcluster failover --key user:42        # the shard that holds user:42\n" +
			"   rcluster failover --slot 0 --json\n" +
			"   rcluster failover 7002 --force         # its master is down",
		Flags: []cli.Flag{fileFlag,
			&cli.IntFlag{Name: "slot", Value: -1, Usage: "the shard owning slot `N`"},
			&cli.StringFlag{Name: "key", Usage: "the shard owning key `K`'s slot"},
			&cli.BoolFlag{Name: "force", Usage: "CLUSTER FAILOVER FORCE: no handshake with the master (writes it had not replicated are lost)"},
			&cli.BoolFlag{Name: "takeover", Usage: "CLUSTER FAILOVER TAKEOVER: no vote either"},
			&cli.DurationFlag{Name: "timeout", Value: failover.DefaultTimeout, Usage: "give up (naming the node that disagrees) after this long"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON on stdout"},
		},
		Action: func(c *cli.Context) error {
			args, err := interspersed(c)
			if err != nil {
				return err
			}
			var target failover.Target
			given := 0
			if len(args) > 1 {
				return usagef("failover takes one NODE, got %q", strings.Join(args, " "))
			}
			if len(args) == 1 {
				target, given = failover.ByNode(args[0]), given+1
			}
			if c.IsSet("slot") {
				if n := c.Int("slot"); n < 0 || n > 16383 {
					return usagef("--slot %d: want 0-16383", n)
				}
				target, given = failover.BySlot(c.Int("slot")), given+1
			}
			if c.IsSet("key") {
				target, given = failover.ByKey(c.String("key")), given+1
			}
			if given != 1 {
				return usagef("failover needs exactly one of NODE, --slot N, --key K")
			}
			mode := failover.Graceful
			switch {
			case c.Bool("force") && c.Bool("takeover"):
				return usagef("--force and --takeover exclude each other")
			case c.Bool("force"):
				mode = failover.Force
			case c.Bool("takeover"):
				mode = failover.Takeover
			}
			cl, err := newCluster(c, stderr)
			if err != nil {
				return err
			}
			res, err := cl.Failover(c.Context, target, failover.Options{Mode: mode, Timeout: c.Duration("timeout")})
			if err != nil {
				return opError(fmt.Errorf("failover (%s): %w", mode, err))
			}
			if c.Bool("json") {
				return printJSON(stdout, res)
			}
			if verbosity(c) > levelQuiet {
				fmt.Fprintf(stderr, "Failover done: %s.\n", res)
			}
			return nil
		},
	}
}

func nodeCommand(fileFlag cli.Flag, stdout, stderr io.Writer) *cli.Command {
	names := make([]string, len(cluster.NodeOps))
	for i, op := range cluster.NodeOps {
		names[i] = string(op)
	}
	return &cli.Command{
		Name:  "node",
		Usage: "kill, stop, start, restart, pause, resume, partition or heal nodes of the cluster",
		UsageText: "rcluster node " + strings.Join(names, "|") + " NODE... [--wait-failover] [--timeout 60s] [--json]\n\n" +
			"NODE is a port, host:port or node id; flags may come before or after the nodes.\n" +
			"   kill       SIGKILL (docker: kill): a crash\n" +
			"   stop       graceful SHUTDOWN, data kept\n" +
			"   start      start a stopped or killed node again with its data\n" +
			"   restart    stop, then start\n" +
			"   pause      SIGSTOP (docker: pause): accepts TCP, answers nothing (a hung node)\n" +
			"   resume     SIGCONT (docker: unpause)\n" +
			"   partition  cut the node off the network (runtime docker with network: bridge)\n" +
			"   heal       reconnect it (no NODE: every node)\n" +
			"Faults return when their effect is visible; with --wait-failover, kill/stop/pause of a\n" +
			"master return when its replica has taken over on every node (refused, changing nothing,\n" +
			"when it has no replica). start/restart/resume/heal return when every node agrees the\n" +
			"cluster is healthy again. Refused on runtime external (nodes rcluster did not start).\n\n" +
			"Examples:\n" +
			"   rcluster node kill 7001 --wait-failover\n" +
			"   rcluster node pause 7002 7003\n" +
			"   rcluster node start 7001\n" +
			"   rcluster node restart 127.0.0.1:7004 --timeout 30s",
		Flags: []cli.Flag{fileFlag,
			&cli.BoolFlag{Name: "wait-failover", Usage: "kill/stop/pause/partition of a master: return when its replica has taken over everywhere"},
			&cli.DurationFlag{Name: "timeout", Value: cluster.DefaultOpTimeout, Usage: "give up after this long"},
			&cli.BoolFlag{Name: "json", Usage: "print the results as JSON on stdout"},
		},
		Action: func(c *cli.Context) error {
			args, err := interspersed(c)
			if err != nil {
				return err
			}
			if len(args) == 0 {
				return usagef("node needs an operation: %s", strings.Join(names, ", "))
			}
			op := cluster.NodeOp(args[0])
			if !slices.Contains(cluster.NodeOps, op) {
				return usagef("node %q: want one of %s", args[0], strings.Join(names, ", "))
			}
			nodes := args[1:]
			cl, err := newCluster(c, stderr)
			if err != nil {
				return err
			}
			if len(nodes) == 0 && op == cluster.Heal {
				for _, n := range cl.Spec.Nodes() {
					nodes = append(nodes, n.Addr())
				}
			}
			if len(nodes) == 0 {
				return usagef("node %s needs at least one NODE (a port, host:port or node id)", op)
			}
			if c.Bool("wait-failover") && op != cluster.Kill && op != cluster.Stop && op != cluster.Pause && op != cluster.Partition {
				return usagef("--wait-failover goes with kill, stop, pause or partition, not %s", op)
			}
			res, err := cl.Node(c.Context, op, nodes, cluster.NodeOptions{WaitFailover: c.Bool("wait-failover"), Timeout: c.Duration("timeout")})
			if err != nil {
				return opError(fmt.Errorf("node %s: %w", op, err))
			}
			if c.Bool("json") {
				return printJSON(stdout, res)
			}
			if verbosity(c) > levelQuiet {
				for _, r := range res {
					line := fmt.Sprintf("%s: %s done in %s", r.Node, r.Op, r.Took.Round(time.Millisecond))
					if r.Failover != nil {
						line += "; failover " + r.Failover.String()
					}
					fmt.Fprintln(stderr, line)
				}
			}
			return nil
		},
	}
}

func resetCommand(fileFlag cli.Flag, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "reset",
		Usage: "back to the state right after the first up: nodes running, planned roles and slots, no keys",
		UsageText: "rcluster reset [--keep-data] [--timeout 60s] [--json]\n\n" +
			"Starts stopped or killed nodes, resumes paused ones, fails back to the spec's masters\n" +
			"(graceful failovers: no acknowledged write lost), points replicas at their planned\n" +
			"masters and, unless --keep-data, flushes every master. It returns when every node agrees:\n" +
			"the cheap way to isolate tests (a new cluster cannot be usable sooner than ~2 s).\n\n" +
			"Examples:\n   rcluster reset\n   rcluster reset --keep-data",
		Flags: []cli.Flag{fileFlag,
			&cli.BoolFlag{Name: "keep-data", Usage: "keep the keys"},
			&cli.DurationFlag{Name: "timeout", Value: cluster.DefaultOpTimeout, Usage: "give up after this long"},
			&cli.BoolFlag{Name: "json", Usage: "print what was done as JSON on stdout"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("reset takes no arguments, got %q", c.Args().First())
			}
			cl, err := newCluster(c, stderr)
			if err != nil {
				return err
			}
			res, err := cl.Reset(c.Context, cluster.ResetOptions{KeepData: c.Bool("keep-data"), Timeout: c.Duration("timeout")})
			if err != nil {
				return opError(err)
			}
			if c.Bool("json") {
				return printJSON(stdout, res)
			}
			if verbosity(c) > levelQuiet {
				fmt.Fprintf(stderr, "Cluster %q reset in %s: %s.\n", cl.Spec.Name, res.Took.Round(time.Millisecond), res)
			}
			return nil
		},
	}
}
