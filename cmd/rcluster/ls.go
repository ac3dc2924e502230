package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rcluster/rcluster/internal/cluster"
)

// listedCluster is one cluster as ls reports it (cluster.List).
type listedCluster = cluster.Listed

func lsCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:    "ls",
		Aliases: []string{"list"},
		Usage:   "list the clusters under a state root with their state (running, stopped, partial)",
		UsageText: "rcluster ls [--root ./.rcluster] [--json]\n\n" +
			"Reads <root>/<name>/rcluster-state.json (or the conf dir) of every cluster and\n" +
			"asks its runtime (processes, containers, external nodes) about its nodes, as\n" +
			"status does. Clusters with distinct names and port blocks run side by side.\n\n" +
			"Examples:\n" +
			"   rcluster ls\n" +
			"   rcluster ls --root /srv/rcluster --json",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Value: ".rcluster", Usage: "state root `DIR` holding one directory per cluster"},
			&cli.BoolFlag{Name: "json", Usage: "machine-readable output"},
			&cli.DurationFlag{Name: "timeout", Value: time.Second, Usage: "bound for each probe of a node"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("ls takes no arguments, got %q (use --root DIR)", c.Args().First())
			}
			root, err := filepath.Abs(c.String("root"))
			if err != nil {
				return fmt.Errorf("ls: %w", err)
			}
			list, err := cluster.List(c.Context, root, c.Duration("timeout"))
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if list == nil {
					list = []listedCluster{}
				}
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"root": root, "clusters": list})
			}
			if len(list) == 0 {
				if verbosity(c) > levelQuiet {
					fmt.Fprintf(stderr, "No clusters under %s.\n", root)
				}
				return nil
			}
			return writeClusterTable(stdout, list)
		},
	}
}

func writeClusterTable(w io.Writer, list []listedCluster) error {
	var buf strings.Builder
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tNODES\tMASTERS\tADDRESS\tDIR\tNOTE")
	for _, lc := range list {
		masters := "-"
		if lc.Formed && lc.Replicas >= 0 {
			masters = strconv.Itoa(len(lc.Ports) / (lc.Replicas + 1))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s:%s\t%s\t%s\n", lc.Name, lc.State, lc.Running, len(lc.Ports), masters,
			lc.Host, portList(slices.Clone(lc.Ports)), lc.Dir, lc.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var out strings.Builder
	for _, line := range strings.SplitAfter(buf.String(), "\n") {
		if strings.HasSuffix(line, "\n") {
			out.WriteString(strings.TrimRight(strings.TrimSuffix(line, "\n"), " ") + "\n")
		}
	}
	_, err := io.WriteString(w, out.String())
	return err
}
