// Command clusterbench measures the time from nothing to a usable Redis
// Cluster two ways, alternating runs on the same machine:
//
//   - hand: N redis-server processes with the manual setup's config, then
//     `redis-cli --cluster create --cluster-replicas R --cluster-yes`, then
//     polling until usable;
//   - rcluster: `rcluster up -f spec` (which returns once usable, confirmed
//     by one more check), then `rcluster down -f spec --purge`, timed apart.
//
// Usable means every node says cluster_state:ok, knows all N nodes, and
// every replica has master_link_status:up.
//
// Usage (from the repository root):
//
//	go run ./bench/cmd/clusterbench -rcluster ./bin/rcluster [-cases 3,6,30,100] [-runs 5] [-json out.json]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9/logging"

	"github.com/rcluster/rcluster/bench/internal/benchstat"
)

type benchCase struct{ nodes, replicas int }

func (c benchCase) name() string { return fmt.Sprintf("%d nodes, r%d", c.nodes, c.replicas) }

// parseCases reads "3,6,30,100" or "6:1,9:2". Without ":R" a case of fewer
// than 6 nodes gets 0 replicas, else 1.
func parseCases(s string) ([]benchCase, error) {
	var out []benchCase
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		ns, rs, hasR := strings.Cut(f, ":")
		n, err := strconv.Atoi(ns)
		if err != nil {
			return nil, fmt.Errorf("case %q: node count: %w", f, err)
		}
		r := 1
		if n < 6 {
			r = 0
		}
		if hasR {
			if r, err = strconv.Atoi(rs); err != nil || r < 0 {
				return nil, fmt.Errorf("case %q: bad replica count", f)
			}
		}
		if n < 3*(r+1) {
			return nil, fmt.Errorf("case %q: %d nodes with %d replicas gives fewer than 3 masters", f, n, r)
		}
		out = append(out, benchCase{n, r})
	}
	if len(out) == 0 {
		return nil, errors.New("no cases")
	}
	return out, nil
}

type config struct {
	rcluster     string
	skipRcluster bool
	redisServer  string
	redisCli     string
	cases        []benchCase
	runs         int
	runsLarge    int
	largeFrom    int
	timeout      time.Duration
	jsonPath     string
	keep         bool
	waitIdle     time.Duration
}

func (c *config) runsFor(bc benchCase) int {
	if c.runsLarge > 0 && bc.nodes >= c.largeFrom {
		return c.runsLarge
	}
	return c.runs
}

func main() {
	// The probes poll nodes that are not listening yet; go-redis would log
	// every refused dial between the progress lines.
	logging.Disable()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("clusterbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	var cases string
	fs.StringVar(&cfg.rcluster, "rcluster", "./bin/rcluster", "rcluster binary to benchmark")
	fs.BoolVar(&cfg.skipRcluster, "skip-rcluster", false, "run the hand path only")
	fs.StringVar(&cfg.redisServer, "redis-server", "redis-server", "redis-server binary for the hand path")
	fs.StringVar(&cfg.redisCli, "redis-cli", "redis-cli", "redis-cli binary for the hand path")
	fs.StringVar(&cases, "cases", "3,6,30,100", "comma-separated node counts, optionally N:replicas (default replicas: 0 below 6 nodes, else 1)")
	fs.IntVar(&cfg.runs, "runs", 5, "runs per case (each run does both paths)")
	fs.IntVar(&cfg.runsLarge, "runs-large", 2, "runs per case for cases of -large-from nodes or more (0: same as -runs)")
	fs.IntVar(&cfg.largeFrom, "large-from", 50, "node count from which -runs-large applies")
	fs.DurationVar(&cfg.timeout, "timeout", 2*time.Minute, "deadline for each step of a run (up, hand path, down)")
	fs.StringVar(&cfg.jsonPath, "json", "", "also write a JSON report to this file (\"-\": JSON on stdout, table on stderr)")
	fs.DurationVar(&cfg.waitIdle, "wait-idle", 70*time.Second, "before each path of each run, wait up to this long for the host CPUs to be less than 25% busy and fewer than 2000 TCP sockets in TIME_WAIT (0: just measure)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep each run's temp dir (configs, logs) for inspection")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if cfg.cases, err = parseCases(cases); err != nil {
		fmt.Fprintln(stderr, "clusterbench:", err)
		return 2
	}
	if cfg.runs < 1 || cfg.runsLarge < 0 || cfg.timeout <= 0 {
		fmt.Fprintln(stderr, "clusterbench: -runs must be >= 1, -runs-large >= 0, -timeout > 0")
		return 2
	}
	for _, b := range []*string{&cfg.redisServer, &cfg.redisCli} {
		p, err := exec.LookPath(*b)
		if err != nil {
			fmt.Fprintln(stderr, "clusterbench:", err)
			return 2
		}
		*b = p
	}
	skipNote := ""
	if cfg.skipRcluster {
		skipNote = "-skip-rcluster"
	} else if why := rclusterUsable(cfg.rcluster); why != "" {
		skipNote = why
	}
	if skipNote != "" {
		fmt.Fprintf(stderr, "clusterbench: rcluster path skipped: %s; its columns will say n/a\n", skipNote)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills the harness outright
		if errors.Is(context.Cause(ctx), context.Canceled) {
			fmt.Fprintln(stderr, "clusterbench: interrupted, stopping everything it started")
		}
	}()

	rep := &Report{
		Started:  time.Now().UTC().Format(time.RFC3339),
		Host:     benchstat.ThisHost(cfg.redisServer),
		Rcluster: cfg.rcluster,
		SkipNote: skipNote,
		TimeoutS: cfg.timeout.Seconds(),
		Usable:   "every node cluster_state:ok and cluster_known_nodes == N; every replica master_link_status:up",
	}
	failed := false
	for _, bc := range cfg.cases {
		cr := &CaseResult{Name: bc.name(), Nodes: bc.nodes, Replicas: bc.replicas, Runs: cfg.runsFor(bc)}
		rep.Cases = append(rep.Cases, cr)
		for i := 0; i < cr.Runs && ctx.Err() == nil; i++ {
			smp := Sample{Run: i + 1}
			doR := func() {
				if skipNote != "" || ctx.Err() != nil {
					return
				}
				busy, tw := waitIdle(ctx, cfg.waitIdle)
				smp.BusyPct, smp.TimeWait = max(smp.BusyPct, busy), max(smp.TimeWait, tw)
				s, err := runRcluster(ctx, &cfg, bc.nodes, bc.replicas, i+1)
				smp.Rcluster = &s
				if err != nil {
					failed = true
					fmt.Fprintf(stderr, "[%s] run %d: rcluster FAILED: %v\n", cr.Name, i+1, err)
				}
			}
			doH := func() {
				if ctx.Err() != nil {
					return
				}
				busy, tw := waitIdle(ctx, cfg.waitIdle)
				smp.BusyPct, smp.TimeWait = max(smp.BusyPct, busy), max(smp.TimeWait, tw)
				s, err := runHand(ctx, &cfg, bc.nodes, bc.replicas)
				smp.Hand = &s
				if err != nil {
					failed = true
					fmt.Fprintf(stderr, "[%s] run %d: hand FAILED: %v\n", cr.Name, i+1, err)
				}
			}
			// Alternate which path goes first so warm caches and
			// leftover load do not always favour the same one.
			if i%2 == 0 {
				smp.Order = "rcluster,hand"
				doR()
				doH()
			} else {
				smp.Order = "hand,rcluster"
				doH()
				doR()
			}
			cr.Samples = append(cr.Samples, smp)
			fmt.Fprintf(stderr, "[%s] run %d/%d (host busy before: %.0f%%, TIME_WAIT %d): %s\n", cr.Name, i+1, cr.Runs, smp.BusyPct, smp.TimeWait, progress(smp))
		}
		cr.summarize()
	}
	rep.Completed = ctx.Err() == nil

	tableOut := stdout
	if cfg.jsonPath == "-" {
		tableOut = stderr
	}
	fmt.Fprintf(tableOut, "\nclusterbench: %d CPUs, redis %s, usable = %s\n", rep.Host.CPUs, rep.Host.RedisVersion, rep.Usable)
	writeTable(tableOut, rep.Cases)
	if cfg.jsonPath != "" {
		if err := benchstat.EmitJSON(cfg.jsonPath, stdout, rep); err != nil {
			fmt.Fprintln(stderr, "clusterbench: write json:", err)
			return 1
		}
	}
	switch {
	case ctx.Err() != nil:
		return 130
	case failed:
		return 1
	}
	return 0
}

func progress(s Sample) string {
	var parts []string
	if r := s.Rcluster; r != nil {
		if r.Error != "" {
			parts = append(parts, "rcluster failed")
		} else {
			p := fmt.Sprintf("rcluster up %s (peak RSS %.1f MiB, down %s", fmtSec(r.UpMS), float64(r.UpMaxRSSKB)/1024, fmtSec(r.DownMS))
			if !r.UsableOnReturn {
				p += fmt.Sprintf(", NOT usable on return: +%s", fmtSec(r.ConfirmWaitMS))
			}
			parts = append(parts, p+")")
		}
	}
	if h := s.Hand; h != nil {
		if h.Error != "" {
			parts = append(parts, "hand failed")
		} else {
			parts = append(parts, fmt.Sprintf("hand %s (spawn %s, create %s, settle %s)",
				fmtSec(h.TotalMS), fmtSec(h.SpawnMS), fmtSec(h.CreateMS), fmtSec(h.SettleMS)))
		}
	}
	if len(parts) == 0 {
		return "skipped"
	}
	return strings.Join(parts, " | ")
}

// waitIdle measures host CPU use in short windows until it is below
// busyWarnPct and fewer than timeWaitMax TCP sockets are in TIME_WAIT, or
// max has passed; it returns the last CPU measurement and TIME_WAIT count.
// Other work on the machine would otherwise land in one path's timings
// only; and every 100-node cluster leaves ~11 000 loopback TIME_WAIT
// sockets behind for 60s, with which the next run's connects get slower
// (measured: up of 100 nodes 3.2-3.5s became 3.8-4.8s with ~100 000).
func waitIdle(ctx context.Context, max time.Duration) (float64, int) {
	deadline := time.Now().Add(max)
	for {
		p := benchstat.BusyPercent(ctx, 300*time.Millisecond)
		tw := timeWaitSockets()
		if (p < busyWarnPct && tw < timeWaitMax) || !time.Now().Before(deadline) || ctx.Err() != nil {
			return p, tw
		}
	}
}

// timeWaitMax is the TIME_WAIT socket count waitIdle waits to fall below.
const timeWaitMax = 2000

// timeWaitSockets is the host's TCP sockets in TIME_WAIT, IPv4 and IPv6
// (the "tw" of /proc/net/sockstat*), or -1 where that cannot be read.
func timeWaitSockets() int {
	total, found := 0, false
	for _, f := range []string{"/proc/net/sockstat", "/proc/net/sockstat6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			if len(fs) == 0 || (fs[0] != "TCP:" && fs[0] != "TCP6:") {
				continue
			}
			for i := 1; i+1 < len(fs); i += 2 {
				if fs[i] == "tw" {
					if n, err := strconv.Atoi(fs[i+1]); err == nil {
						total, found = total+n, true
					}
				}
			}
		}
	}
	if !found {
		return -1
	}
	return total
}
