package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/rcluster/rcluster/internal/cluster"
)

// Commands that move slots with their keys: migrate, reshard, rebalance.

// slotError maps a slot command's error to the exit codes: bad slots or
// nodes are usage errors (2), anything else a failure (1).
func slotError(err error) error {
	var be *cluster.BadInputError
	if errors.As(err, &be) {
		return &UsageError{err}
	}
	return opError(err)
}

func migrateCommand(fileFlag cli.Flag, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "move slots with their keys to a master; --hold stops mid-way (real ASK/TRYAGAIN), --finish/--abort end it",
		UsageText: "rcluster migrate --slots S[-E][,S2...] --to NODE [--hold] [--timeout 60s] [--json]\n" +
			"rcluster migrate --finish | --abort\n\n" +
			"Moves the slots and their keys to NODE (a master: port, host:port or node id), many slots at\n" +
			"once with large MIGRATE batches, in redis-cli's SETSLOT order (IMPORTING on the target,\n" +
			"MIGRATING on the source, keys, then NODE on the target, the source, every other master).\n" +
			"It returns when every node agrees on the new owners and no slot is open. A slot is never\n" +
			"finalised while its source still holds keys of it.\n" +
			"--hold stops mid-way: the slots MIGRATING on the source and IMPORTING on the target with part\n" +
			"of their keys moved, so clients get real -ASK and -TRYAGAIN replies for as long as a test wants.\n" +
			"--finish completes every open slot (held, or left by an interrupted migration: what is open is\n" +
			"read from the nodes); --abort moves the keys back to the source and closes the slots.\n\n" +
			"Examples:\n" +
			"   rcluster migrate --slots 0-99 --to 7002\n" +
			"   rcluster migrate --slots 42 --to 7003 --hold   # clients now see ASK for slot 42's moved keys\n" +
			"   rcluster migrate --finish",
		Flags: []cli.Flag{fileFlag,
			&cli.StringFlag{Name: "slots", Usage: "slots to move: `S[-E][,S2...]`"},
			&cli.StringFlag{Name: "to", Usage: "the master that receives them (`NODE`)"},
			&cli.BoolFlag{Name: "hold", Usage: "stop mid-way, the slots open and part of their keys moved"},
			&cli.BoolFlag{Name: "finish", Usage: "complete every open slot"},
			&cli.BoolFlag{Name: "abort", Usage: "move the keys of every open slot back and close it"},
			&cli.DurationFlag{Name: "timeout", Value: cluster.DefaultOpTimeout, Usage: "give up after this long"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON on stdout"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("migrate takes no arguments, got %q (use --slots and --to)", c.Args().First())
			}
			finish, abort := c.Bool("finish"), c.Bool("abort")
			moving := c.IsSet("slots") || c.IsSet("to") || c.Bool("hold")
			switch {
			case finish && abort:
				return usagef("--finish and --abort exclude each other")
			case (finish || abort) && moving:
				return usagef("--finish and --abort take no --slots, --to or --hold")
			case !finish && !abort && (!c.IsSet("slots") || !c.IsSet("to")):
				return usagef("migrate needs --slots S[-E][,...] and --to NODE (or --finish / --abort)")
			}
			var slotList []int
			if !finish && !abort {
				var err error
				if slotList, err = cluster.ParseSlots(c.String("slots")); err != nil {
					return slotError(err)
				}
			}
			cl, err := newCluster(c, stderr)
			if err != nil {
				return err
			}
			o := cluster.MoveOptions{Hold: c.Bool("hold"), Timeout: c.Duration("timeout")}
			what := "migrate"
			var res any
			var summary string
			switch {
			case finish:
				what = "migrate --finish"
				r, err := cl.MigrateFinish(c.Context, o)
				if err != nil {
					return slotError(fmt.Errorf("%s: %w", what, err))
				}
				res, summary = r, r.String()
			case abort:
				what = "migrate --abort"
				r, err := cl.MigrateAbort(c.Context, o)
				if err != nil {
					return slotError(fmt.Errorf("%s: %w", what, err))
				}
				res, summary = r, r.String()
			default:
				r, err := cl.Migrate(c.Context, slotList, c.String("to"), o)
				if err != nil {
					return slotError(fmt.Errorf("%s: %w", what, err))
				}
				res, summary = r, r.String()
				if o.Hold {
					summary += "; held open: `rcluster migrate --finish` completes, `--abort` undoes"
				}
			}
			if c.Bool("json") {
				return printJSON(stdout, res)
			}
			if verbosity(c) > levelQuiet {
				fmt.Fprintf(stderr, "%s: %s.\n", what, summary)
			}
			return nil
		},
	}
}

func reshardCommand(fileFlag cli.Flag, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "reshard",
		Usage: "move N slots from some masters to one, with redis-cli's meaning, parallel and in large batches",
		UsageText: "rcluster reshard [--from NODE[,NODE...]] --to NODE --slots N [--dry-run] [--timeout 60s] [--json]\n\n" +
			"As `redis-cli --cluster reshard`: the sources (default: every master but --to) give N slots\n" +
			"in proportion to what they own, their lowest-numbered first; unlike redis-cli, exactly N move\n" +
			"(its rounding can move fewer), many slots at once, and it returns when every node agrees.\n\n" +
			"Examples:\n" +
			"   rcluster reshard --to 7003 --slots 1000\n" +
			"   rcluster reshard --from 7001,7002 --to 7004 --slots 5461 --dry-run",
		Flags: []cli.Flag{fileFlag,
			&cli.StringFlag{Name: "from", Usage: "source masters, comma-separated (default: all but --to)"},
			&cli.StringFlag{Name: "to", Usage: "the master that receives the slots"},
			&cli.IntFlag{Name: "slots", Usage: "how many slots to move"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan, move nothing"},
			&cli.DurationFlag{Name: "timeout", Value: cluster.DefaultOpTimeout, Usage: "give up after this long"},
			&cli.BoolFlag{Name: "json", Usage: "print the plan and result as JSON on stdout"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("reshard takes no arguments, got %q", c.Args().First())
			}
			if !c.IsSet("to") || c.Int("slots") < 1 {
				return usagef("reshard needs --to NODE and --slots N (N >= 1)")
			}
			var from []string
			if f := c.String("from"); f != "" && f != "all" {
				from = strings.Split(f, ",")
			}
			cl, err := newCluster(c, stderr)
			if err != nil {
				return err
			}
			p, err := cl.Reshard(c.Context, from, c.String("to"), c.Int("slots"), cluster.MoveOptions{DryRun: c.Bool("dry-run"), Timeout: c.Duration("timeout")})
			if err != nil {
				return slotError(fmt.Errorf("reshard: %w", err))
			}
			return writeMovePlan(c, stdout, stderr, "reshard", p)
		},
	}
}

func rebalanceCommand(fileFlag cli.Flag, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "rebalance",
		Usage: "even out the masters' slots by weight, with redis-cli's meaning, parallel and in large batches",
		UsageText: "rcluster rebalance [--weight NODE=W]... [--use-empty-masters] [--threshold PCT] [--dry-run] [--json]\n\n" +
			"As `redis-cli --cluster rebalance`: each master should own slots in proportion to its weight\n" +
			"(default 1; 0 empties it); nothing moves unless one is off by more than --threshold percent\n" +
			"(default 2). Masters without slots take part only with --use-empty-masters.\n\n" +
			"Examples:\n" +
			"   rcluster rebalance --use-empty-masters\n" +
			"   rcluster rebalance --weight 7001=2 --dry-run\n" +
			"   rcluster rebalance --weight 7003=0   # empty 7003",
		Flags: []cli.Flag{fileFlag,
			&cli.StringSliceFlag{Name: "weight", Usage: "`NODE=W` (repeatable)"},
			&cli.BoolFlag{Name: "use-empty-masters", Usage: "give masters without slots their share"},
			&cli.Float64Flag{Name: "threshold", Usage: "percent off balance that triggers moves (default 2)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan, move nothing"},
			&cli.DurationFlag{Name: "timeout", Value: cluster.DefaultOpTimeout, Usage: "give up after this long"},
			&cli.BoolFlag{Name: "json", Usage: "print the plan and result as JSON on stdout"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("rebalance takes no arguments, got %q", c.Args().First())
			}
			weights := map[string]float64{}
			for _, kv := range c.StringSlice("weight") {
				name, v, ok := strings.Cut(kv, "=")
				w, err := strconv.ParseFloat(v, 64)
				if !ok || err != nil || w < 0 {
					return usagef("--weight %q: want NODE=W with W >= 0", kv)
				}
				weights[name] = w
			}
			if c.Float64("threshold") < 0 {
				return usagef("--threshold must be >= 0")
			}
			cl, err := newCluster(c, stderr)
			if err != nil {
				return err
			}
			p, err := cl.Rebalance(c.Context, cluster.RebalanceOptions{Weights: weights, UseEmptyMasters: c.Bool("use-empty-masters"),
				Threshold: c.Float64("threshold")}, cluster.MoveOptions{DryRun: c.Bool("dry-run"), Timeout: c.Duration("timeout")})
			if err != nil {
				return slotError(fmt.Errorf("rebalance: %w", err))
			}
			return writeMovePlan(c, stdout, stderr, "rebalance", p)
		},
	}
}

func writeMovePlan(c *cli.Context, stdout, stderr io.Writer, what string, p *cluster.MovePlan) error {
	if c.Bool("json") {
		return printJSON(stdout, p)
	}
	if verbosity(c) <= levelQuiet {
		return nil
	}
	switch {
	case c.Bool("dry-run"):
		fmt.Fprintf(stderr, "%s --dry-run: would move %s; nothing was moved.\n", what, p.Summary())
	case p.Result == nil:
		fmt.Fprintf(stderr, "%s: %s.\n", what, p.Summary())
	default:
		fmt.Fprintf(stderr, "%s: moved %s: %s.\n", what, p.Summary(), p.Result)
	}
	for _, m := range p.After {
		fmt.Fprintf(stderr, "  %s: %d slots\n", m.Addr, m.SlotCount())
	}
	return nil
}
