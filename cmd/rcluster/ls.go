package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rcluster/rcluster/internal/procmgr"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/statedir"
)

// listedCluster is one state dir under the root, as ls reports it.
type listedCluster struct {
	Name  string `json:"name"`
	Dir   string `json:"dir"`
	Host  string `json:"host"`
	Ports []int  `json:"ports"`
	// State is "running" (every node), "stopped" (none) or "partial".
	State   string `json:"state"`
	Running int    `json:"running"`
	Nodes   int    `json:"nodes"`
	// Formed is true once `up` completed (rcluster-state.json exists).
	Formed   bool   `json:"formed"`
	Replicas int    `json:"replicas"`
	Detail   string `json:"detail,omitempty"`
}

var confNameRE = regexp.MustCompile(`^redis_(\d+)\.conf$`)

// readClusterDir describes dir from its rcluster-state.json, or, when up
// never completed there, from its conf/redis_<port>.conf files. ok is false
// when dir is not an rcluster state dir.
func readClusterDir(dir string) (lc listedCluster, ok bool, err error) {
	lc = listedCluster{Name: filepath.Base(dir), Dir: dir, Host: "127.0.0.1"}
	st, err := statedir.Read(dir)
	switch {
	case err != nil:
		return lc, true, err
	case st != nil:
		if st.Name != "" {
			lc.Name = st.Name
		}
		if st.Host != "" {
			lc.Host = st.Host
		}
		lc.Ports, lc.Replicas, lc.Formed = st.Ports, st.Replicas, st.Formed
		return lc, true, nil
	}
	entries, err := os.ReadDir(filepath.Join(dir, "conf"))
	if errors.Is(err, fs.ErrNotExist) {
		return lc, false, nil
	}
	if err != nil {
		return lc, true, err
	}
	for _, e := range entries {
		m := confNameRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		port, _ := strconv.Atoi(m[1])
		lc.Ports = append(lc.Ports, port)
		if h := confBind(filepath.Join(dir, "conf", e.Name())); h != "" {
			lc.Host = h
		}
	}
	sort.Ints(lc.Ports)
	return lc, len(lc.Ports) > 0, nil
}

// confBind returns the first address of a redis.conf's bind line.
func confBind(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.EqualFold(f[0], "bind") {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// listClusters reads every state dir under root and inspects its processes
// (in parallel, each probe bounded by timeout).
func listClusters(ctx context.Context, root string, timeout time.Duration) ([]listedCluster, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ls %s: %w", root, err)
	}
	var out []listedCluster
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		lc, ok, err := readClusterDir(filepath.Join(root, e.Name()))
		if !ok {
			continue
		}
		if err != nil {
			lc.State, lc.Detail = "unknown", err.Error()
		}
		out = append(out, lc)
	}
	var wg sync.WaitGroup
	for i := range out {
		if out[i].State != "" {
			continue
		}
		wg.Go(func() { inspectListed(ctx, &out[i], timeout) })
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func inspectListed(ctx context.Context, lc *listedCluster, timeout time.Duration) {
	s := &spec.Spec{Dir: lc.Dir}
	nodes := make([]procmgr.Node, len(lc.Ports))
	for i, p := range lc.Ports {
		nodes[i] = procmgr.Node{Host: lc.Host, Port: p, ConfFile: s.ConfFile(p), PidFile: s.PidFile(p), LogFile: s.LogFile(p)}
	}
	states := procmgr.Inspect(ctx, nodes, procmgr.Options{Conn: redisconn.Options{Timeout: timeout}})
	lc.Nodes = len(nodes)
	var down []string
	for i, st := range states {
		if st.Running {
			lc.Running++
		} else {
			down = append(down, strconv.Itoa(lc.Ports[i]))
		}
	}
	switch {
	case lc.Running == lc.Nodes:
		lc.State = "running"
	case lc.Running == 0:
		lc.State = "stopped"
	default:
		lc.State = "partial"
		lc.Detail = "not running: " + strings.Join(down, ", ")
	}
	if !lc.Formed && lc.Detail == "" {
		lc.Detail = "never formed (up did not complete)"
	}
}

func lsCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:    "ls",
		Aliases: []string{"list"},
		Usage:   "list the clusters under a state root with their state (running, stopped, partial)",
		UsageText: "rcluster ls [--root ./.rcluster] [--json]\n\n" +
			"Reads <root>/<name>/rcluster-state.json (or the conf dir) of every cluster and\n" +
			"checks its processes. Clusters with distinct names and port blocks run side by side.\n\n" +
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
			list, err := listClusters(c.Context, root, c.Duration("timeout"))
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
