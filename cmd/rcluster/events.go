package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rcluster/rcluster/internal/events"
)

// eventsCommand is `rcluster events [--follow] [--json] [--since D]`: the
// cluster's timeline from <dir>/events.jsonl, and with --follow a watcher
// that adds to it what the nodes say while it runs.
func eventsCommand(fileFlag *cli.StringFlag, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "events",
		Usage: "what the cluster did and when: failures, failovers, role and slot changes, rcluster's operations",
		UsageText: "rcluster events [-f cluster.yaml] [--follow] [--json] [--since D]\n\n" +
			"Every rcluster command that changes the cluster records what it did in\n" +
			"<dir>/events.jsonl. With --follow, rcluster also watches every node's CLUSTER NODES\n" +
			"(node suspected, failed, recovered, unreachable; role, failover, epoch and slot\n" +
			"owner changes), records what it sees and prints new events until Ctrl-C: run it\n" +
			"next to your tests to line their errors up against the cluster's changes.\n" +
			"One watcher records per cluster; a second --follow shows what the first records.\n\n" +
			"Examples:\n" +
			"   rcluster events --since 10m\n" +
			"   rcluster events --follow\n" +
			"   rcluster events --json | jq -c 'select(.kind == \"failover\")'",
		Flags: []cli.Flag{fileFlag,
			&cli.BoolFlag{Name: "follow", Usage: "watch the nodes, record and print new events until interrupted"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per line (time, kind, node, message, ...)"},
			&cli.StringFlag{Name: "since", Usage: "only events of the last `D` (10m, 1h) or since a time (RFC3339)"},
			&cli.DurationFlag{Name: "interval", Value: events.DefaultInterval, Usage: "with --follow, how often each node is read"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("events takes no arguments, got %q", c.Args().First())
			}
			since, err := parseSince(c.String("since"), time.Now())
			if err != nil {
				return err
			}
			if c.Duration("interval") <= 0 {
				return usagef("--interval: want a positive duration, got %v", c.Duration("interval"))
			}
			s, err := loadSpec(c)
			if err != nil {
				return err
			}
			out := &eventPrinter{w: stdout, json: c.Bool("json")}
			path := events.Path(s.Dir)
			if !c.Bool("follow") {
				evs, err := events.Read(path, since)
				for _, e := range evs {
					if err := out.print(e); err != nil {
						return err
					}
				}
				if err == nil && len(evs) == 0 && verbosity(c) > levelQuiet {
					fmt.Fprintf(stderr, "no events recorded in %s%s (rcluster commands record them, and so does `rcluster events --follow`)\n",
						path, map[bool]string{true: " in that time", false: ""}[c.IsSet("since")])
				}
				return err
			}
			conn, err := s.ConnOptions()
			if err != nil {
				return err
			}
			return followEvents(c.Context, followOptions{
				dir: s.Dir, since: since,
				watch: func(ctx context.Context, emit func(events.Event)) error {
					return events.Watch(ctx, s.Addrs(), conn, c.Duration("interval"), emit)
				},
			}, out, stderr, verbosity(c) > levelQuiet)
		},
	}
}

type followOptions struct {
	dir   string
	since time.Time
	// watch runs the watcher (events.Watch on the spec's nodes).
	watch func(ctx context.Context, emit func(events.Event)) error
}

// followEvents prints the recorded events, then new ones until ctx ends
// (not an error). The one watcher of the cluster (it holds the log's
// watch lock) records what it sees and the log is followed, so events
// that other rcluster commands record show up too. Without a state dir
// there is no log: the watcher's events are only printed.
func followEvents(ctx context.Context, o followOptions, out *eventPrinter, stderr io.Writer, notes bool) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	out.onError = cancel
	log, err := events.Open(o.dir)
	if errors.Is(err, fs.ErrNotExist) {
		if notes {
			fmt.Fprintf(stderr, "state dir %s does not exist: events are printed, not recorded\n", o.dir)
		}
		err = o.watch(ctx, func(e events.Event) { _ = out.print(e) })
		return firstErr(err, context.Cause(ctx))
	}
	if err != nil {
		return err
	}
	defer log.Close()
	owner, err := log.LockWatch()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	var watchErr error
	if owner {
		var once sync.Once
		wg.Go(func() {
			watchErr = o.watch(ctx, func(e events.Event) {
				if err := log.Record(e); err != nil {
					once.Do(func() { fmt.Fprintf(stderr, "rcluster: warning: %v (events are no longer recorded)\n", err) })
				}
			})
			if watchErr != nil {
				cancel(watchErr)
			}
		})
	} else if notes {
		fmt.Fprintf(stderr, "another `rcluster events --follow` watches this cluster; showing what it records\n")
	}
	err = events.Follow(ctx, log.Path(), o.since, func(e events.Event) { _ = out.print(e) })
	// The watcher's stop event, recorded after the follow's last read, is
	// in the log for the next `rcluster events`.
	cancel(err)
	wg.Wait()
	return firstErr(err, watchErr, context.Cause(ctx))
}

// firstErr returns the first real error: an interrupt (the ctx's own
// cancellation) is how --follow ends, not a failure.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
	return nil
}

// eventPrinter writes events as human lines or JSON lines; the first write
// error (a closed pipe) stops a follow through onError.
type eventPrinter struct {
	w       io.Writer
	json    bool
	onError func(error)
	err     error
}

func (p *eventPrinter) print(e events.Event) error {
	if p.err != nil {
		return p.err
	}
	var err error
	if p.json {
		err = json.NewEncoder(p.w).Encode(e)
	} else {
		_, err = fmt.Fprintln(p.w, e.String())
	}
	if err != nil {
		p.err = fmt.Errorf("events: write: %w", err)
		if p.onError != nil {
			p.onError(p.err)
		}
	}
	return p.err
}

// parseSince reads --since: a duration back from now ("10m") or a time
// (RFC3339, "2026-12-01T08:50:00Z"). Empty means every event.
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return time.Time{}, usagef("--since %q: want a duration back from now, such as 10m", v)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	hint := ""
	if strings.ContainsAny(v, "0123456789") && !strings.ContainsAny(v, "-:") {
		hint = " (a duration needs a unit: 10m, 1h, 30s)"
	}
	return time.Time{}, usagef("--since %q: want a duration (10m) or a time (2026-12-01T08:50:00Z)%s", v, hint)
}
