// Command opsbench measures issue 13's operations on a running 6-node
// cluster (3 masters, 1 replica each) made by `rcluster up`, each side by
// side with the hand way of doing the same thing, over -runs runs:
//
//   - graceful failover (node timeout 5000 and 1000): `rcluster failover
//     <master>` against `redis-cli -p <replica> CLUSTER FAILOVER` plus a
//     tight loop over every node's CLUSTER NODES until all agree;
//   - `rcluster node kill <master> --wait-failover` (node timeout 1000)
//     against kill -9 plus the same kind of loop, with the parts of the
//     wait (detection, election, propagation) and when a client's first
//     write was acknowledged again; `rcluster reset` restores the cluster
//     after each kill;
//   - `rcluster reset` of the cluster holding -keys keys, without and with
//     one failback, against a fresh `down --purge` + `up`;
//
// and issue 14's on 3 masters without replicas (node timeout 5000)
// holding keys of 100 bytes spread over every slot:
//
//   - `rcluster reshard` of one third of the slots (all 5461 of the first
//     master's, to the third) against `redis-cli --cluster reshard`, with
//     its default pipeline and with --cluster-pipeline 1000, for each of
//     -reshard-keys;
//   - scaling to 6 masters by an edited spec and `rcluster up -v` (its
//     steps timed apart) against starting 3 nodes, `redis-cli --cluster
//     add-node` and `redis-cli --cluster rebalance --cluster-use-empty-masters`.
//
// After every rcluster command that moves slots the harness checks,
// untimed, that `redis-cli --cluster check` passes and that no key was
// lost or stranded, and fails the run loudly when not.
//
// Every timed step starts from a settled cluster on a quiet host, and
// outside Redis 7.0's election retry windows. Timings are reported, never
// judged: the exit status says only whether every run worked.
//
// Usage (from the repository root):
//
//	go run ./bench/cmd/opsbench -rcluster ./bin/rcluster [-runs 5] [-cases failover,kill,reset,reshard,scale] [-json out.json]
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

type config struct {
	rcluster    string
	redisCli    string
	runs        int
	cases       map[string]bool
	failoverNT  []time.Duration
	killNT      time.Duration
	keys        int
	reshardKeys []int
	scaleKeys   int
	runsLarge   int
	timeout     time.Duration
	waitIdle    time.Duration
	pollPause   time.Duration
	jsonPath    string
	keep        bool
	progressOut io.Writer
}

func main() {
	// The probes write to replicas that answer MOVED and poll nodes that
	// were just killed; go-redis would log every one of those.
	logging.Disable()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

var allCases = []string{"failover", "kill", "reset", "reshard", "scale"}

// largeKeys is the key count above which a case runs -runs-large times.
const largeKeys = 100000

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("opsbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config{progressOut: stderr}
	var cases, fnt, rkeys string
	fs.StringVar(&cfg.rcluster, "rcluster", "./bin/rcluster", "rcluster binary to benchmark")
	fs.StringVar(&cfg.redisCli, "redis-cli", "redis-cli", "redis-cli binary for the hand way")
	fs.IntVar(&cfg.runs, "runs", 5, "runs per case (each run does both ways)")
	fs.StringVar(&cases, "cases", strings.Join(allCases, ","), "which benchmarks: comma-separated of "+strings.Join(allCases, ", "))
	fs.StringVar(&fnt, "failover-timeouts", "5000,1000", "cluster-node-timeout values (ms) of the graceful failover cases")
	killNT := fs.Int("kill-timeout", 1000, "cluster-node-timeout (ms) of the kill case")
	fs.IntVar(&cfg.keys, "keys", 10000, "keys the cluster holds before each reset")
	fs.StringVar(&rkeys, "reshard-keys", "100000,1000000", "key counts (comma-separated) of the reshard cases, 100 bytes each")
	fs.IntVar(&cfg.scaleKeys, "scale-keys", 100000, "keys (100 bytes each) the cluster holds before each scale")
	fs.IntVar(&cfg.runsLarge, "runs-large", 1, fmt.Sprintf("runs of the reshard and scale cases with more than %d keys", largeKeys))
	fs.DurationVar(&cfg.timeout, "timeout", 2*time.Minute, "deadline of each step")
	fs.DurationVar(&cfg.waitIdle, "wait-idle", 20*time.Second, "before each timed step, wait up to this long for the host CPUs to be less than 25% busy and fewer than 2000 TCP sockets in TIME_WAIT (0: just measure)")
	fs.DurationVar(&cfg.pollPause, "poll", time.Millisecond, "pause between the hand way's polling rounds (and the write probe's writes)")
	fs.StringVar(&cfg.jsonPath, "json", "", "also write a JSON report to this file (\"-\": JSON on stdout, tables on stderr)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep each cluster's temp dir (spec, logs, command output)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := cfg.check(cases, fnt, rkeys, *killNT, fs.NArg()); err != nil {
		fmt.Fprintln(stderr, "opsbench:", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	finished := make(chan struct{})
	defer close(finished) // before stop: a normal end is no interruption
	go func() {
		select {
		case <-finished:
			return
		case <-ctx.Done():
		}
		stop() // a second Ctrl-C kills the harness outright
		if errors.Is(context.Cause(ctx), context.Canceled) {
			fmt.Fprintln(stderr, "opsbench: interrupted, stopping every cluster it started")
		}
	}()

	rep := &Report{
		Started:  time.Now().UTC().Format(time.RFC3339),
		Host:     benchstat.ThisHost("redis-server"),
		Rcluster: cfg.rcluster,
		Runs:     cfg.runs,
		Keys:     cfg.keys,
		PollMS:   float64(cfg.pollPause) / float64(time.Millisecond),
	}
	if cfg.cases["failover"] {
		for _, nt := range cfg.failoverNT {
			cr := failoverCase(nt)
			rep.Cases = append(rep.Cases, cr)
			for i := 0; i < cfg.runs && ctx.Err() == nil; i++ {
				s := &Sample{Run: i + 1}
				cr.Samples = append(cr.Samples, s)
				fail(s, failoverRun(ctx, &cfg, nt, i, s))
				cfg.progress(cr, s, cfg.runs)
			}
			cr.finish()
		}
	}
	if cfg.cases["kill"] && ctx.Err() == nil {
		cr := killCase(cfg.killNT)
		rep.Cases = append(rep.Cases, cr)
		cfg.onCluster(ctx, "opsbench-kill", cfg.killNT, opsShape, cfg.runs, []*CaseResult{cr}, func(c *benchCluster, i int, s []*Sample) error {
			return killRun(ctx, c, i, s[0])
		})
		cr.finish()
	}
	if cfg.cases["reset"] && ctx.Err() == nil {
		plain, back := resetCase(false, cfg.keys), resetCase(true, cfg.keys)
		rep.Cases = append(rep.Cases, plain, back)
		cfg.onCluster(ctx, "opsbench-reset", resetNodeTime, opsShape, cfg.runs, []*CaseResult{plain, back}, func(c *benchCluster, i int, s []*Sample) error {
			return resetRun(ctx, c, i, s[0], s[1])
		})
		plain.finish()
		back.finish()
	}
	for _, keys := range cfg.reshardKeys {
		if !cfg.cases["reshard"] || ctx.Err() != nil {
			break
		}
		plain, piped := reshardCases(keys)
		rep.Cases = append(rep.Cases, plain, piped)
		cfg.onCluster(ctx, "opsbench-reshard", moveNodeTimeout, moveShape, cfg.runsFor(keys), []*CaseResult{plain, piped}, func(c *benchCluster, i int, s []*Sample) error {
			return reshardRun(ctx, c, i, keys, s[0], s[1])
		})
		plain.finish()
		piped.finish()
	}
	if cfg.cases["scale"] && ctx.Err() == nil {
		cr := scaleCase(cfg.scaleKeys)
		rep.Cases = append(rep.Cases, cr)
		cfg.onCluster(ctx, "opsbench-scale", moveNodeTimeout, scaleShape, cfg.runsFor(cfg.scaleKeys), []*CaseResult{cr}, func(c *benchCluster, i int, s []*Sample) error {
			return scaleRun(ctx, c, i, cfg.scaleKeys, s[0])
		})
		cr.finish()
	}
	rep.Completed = ctx.Err() == nil

	tables := stdout
	if cfg.jsonPath == "-" {
		tables = stderr
	}
	fmt.Fprintf(tables, "\nopsbench: %d CPUs, redis %s, %d runs, hand way polls every %v\n", rep.Host.CPUs, rep.Host.RedisVersion, cfg.runs, cfg.pollPause)
	writeTables(tables, rep.Cases)
	if cfg.jsonPath != "" {
		if err := benchstat.EmitJSON(cfg.jsonPath, stdout, rep); err != nil {
			fmt.Fprintln(stderr, "opsbench: write json:", err)
			return 1
		}
	}
	if ctx.Err() != nil {
		return 130
	}
	for _, c := range rep.Cases {
		if c.Errors > 0 {
			return 1
		}
	}
	return 0
}

func (cfg *config) check(cases, fnt, rkeys string, killNT, nargs int) error {
	if nargs > 0 {
		return errors.New("no arguments expected")
	}
	if cfg.runs < 1 || cfg.runsLarge < 1 || cfg.keys < 0 || cfg.scaleKeys < 1 || cfg.timeout <= 0 || cfg.pollPause <= 0 || killNT <= 0 {
		return errors.New("-runs and -runs-large must be >= 1, -keys >= 0, -scale-keys >= 1, -timeout, -poll and -kill-timeout > 0")
	}
	for _, f := range strings.Split(rkeys, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-reshard-keys: %q is not a key count >= 1", f)
		}
		cfg.reshardKeys = append(cfg.reshardKeys, n)
	}
	cfg.killNT = time.Duration(killNT) * time.Millisecond
	cfg.cases = map[string]bool{}
	for _, c := range strings.Split(cases, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		known := false
		for _, k := range allCases {
			known = known || k == c
		}
		if !known {
			return fmt.Errorf("-cases: unknown %q (want %s)", c, strings.Join(allCases, ", "))
		}
		cfg.cases[c] = true
	}
	if len(cfg.cases) == 0 {
		return errors.New("-cases: none given")
	}
	for _, f := range strings.Split(fnt, ",") {
		ms, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || ms < 100 {
			return fmt.Errorf("-failover-timeouts: %q is not a node timeout in ms (>= 100)", f)
		}
		cfg.failoverNT = append(cfg.failoverNT, time.Duration(ms)*time.Millisecond)
	}
	fi, err := os.Stat(cfg.rcluster)
	if err != nil {
		return fmt.Errorf("-rcluster: %w (build it first: go build -o bin/rcluster ./cmd/rcluster)", err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("-rcluster: %s is not an executable file", cfg.rcluster)
	}
	if cfg.redisCli, err = exec.LookPath(cfg.redisCli); err != nil {
		return err
	}
	return nil
}

// runsFor is the number of runs of a case holding keys keys.
func (cfg *config) runsFor(keys int) int {
	if keys > largeKeys {
		return cfg.runsLarge
	}
	return cfg.runs
}

// onCluster runs runs runs of one or more cases that share a cluster of
// shape sh (one sample per case per run). After a failed run the cluster
// is made anew, since its state is unknown.
func (cfg *config) onCluster(ctx context.Context, name string, nodeTimeout time.Duration, sh shape, runs int, cases []*CaseResult, runOne func(*benchCluster, int, []*Sample) error) {
	var c *benchCluster
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for i := 0; i < runs && ctx.Err() == nil; i++ {
		samples := make([]*Sample, len(cases))
		for k, cr := range cases {
			samples[k] = &Sample{Run: i + 1}
			cr.Samples = append(cr.Samples, samples[k])
		}
		var err error
		if c == nil {
			if c, err = newCluster(cfg, name, nodeTimeout, sh); err == nil {
				_, err = c.up(ctx)
			}
		}
		if err == nil {
			err = runOne(c, i, samples)
		}
		for k, s := range samples {
			fail(s, err)
			cfg.progress(cases[k], s, runs)
		}
		if err != nil && c != nil {
			c.close()
			c = nil
		}
	}
}

func fail(s *Sample, err error) {
	if err != nil && s.Error == "" {
		s.Error = err.Error()
	}
}

// progress prints one line per finished sample on stderr.
func (cfg *config) progress(cr *CaseResult, s *Sample, runs int) {
	line := fmt.Sprintf("[%s] run %d/%d", cr.Name, s.Run, runs)
	if s.Error != "" {
		fmt.Fprintf(cfg.progressOut, "%s FAILED: %s\n", line, s.Error)
		return
	}
	var parts []string
	for _, p := range cr.Parts {
		if v, ok := s.MS[p.Key]; ok {
			parts = append(parts, fmt.Sprintf("%s %s", p.Key, fmtSec(v)))
		}
	}
	fmt.Fprintf(cfg.progressOut, "%s (host %.0f%% busy, TIME_WAIT %d before): %s\n", line, s.Load.BusyPct, s.Load.TimeWait, strings.Join(parts, ", "))
	for _, n := range s.Notes {
		fmt.Fprintf(cfg.progressOut, "    note: %s\n", n)
	}
}
