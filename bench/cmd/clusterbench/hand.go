package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rcluster/rcluster/internal/portblock"
)

// HandSample is one run of the hand path.
type HandSample struct {
	Ports string `json:"ports"`
	// TotalMS: from writing the first config file to the end of the first
	// sweep that found every node usable.
	TotalMS float64 `json:"total_ms"`
	// SpawnMS: configs written, all processes started and answering PING.
	SpawnMS float64 `json:"spawn_ms"`
	// CreateMS: redis-cli --cluster create alone.
	CreateMS float64 `json:"create_ms"`
	// SettleMS: from create's exit to usable.
	SettleMS float64 `json:"settle_ms"`
	// SweepMS: how long the final (successful) readiness sweep took; the
	// measured total overstates the true time by at most this much.
	SweepMS float64 `json:"sweep_ms"`
	Error   string  `json:"error,omitempty"`
}

// handConf is what a user writes by hand per node (the manual setup in the
// reference facts): default Redis settings apart from these. daemonize is
// off only so the harness owns the processes and can always reap them; bind
// keeps traffic on loopback.
func handConf(root string, port int) string {
	p := strconv.Itoa(port)
	return "port " + p + "\n" +
		"bind 127.0.0.1\n" +
		"cluster-enabled yes\n" +
		"cluster-config-file nodes.conf\n" +
		"cluster-node-timeout 5000\n" +
		"appendonly yes\n" +
		"daemonize no\n" +
		"pidfile " + filepath.Join(root, "run", "redis_"+p+".pid") + "\n" +
		"logfile " + filepath.Join(root, "log", "redis_"+p+".log") + "\n" +
		"dir " + filepath.Join(root, "db", "redis_"+p) + "\n"
}

// runHand spawns n redis-server processes, forms a cluster with
// redis-cli --cluster create and polls until it is usable. Everything it
// started is killed and its temp dir removed before it returns.
func runHand(ctx context.Context, cfg *config, n, replicas int) (s HandSample, err error) {
	defer func() {
		if err != nil {
			s.Error = err.Error()
		}
	}()
	// The block is locked the way the integration tests lock theirs (same
	// range, same lock files), so a bench beside go test cannot take their
	// ports. Deferred before the cleanup below, release runs after it: the
	// block stays held until every node on it is dead.
	base, release, err := portblock.Reserve(n)
	if err != nil {
		return s, fmt.Errorf("ports for %d nodes: %w", n, err)
	}
	defer release()
	root, err := os.MkdirTemp("", "clusterbench-hand-")
	if err != nil {
		return s, err
	}
	var kids children
	defer func() {
		kids.killAll()
		killUnder(root)
		if !cfg.keep {
			os.RemoveAll(root)
		}
	}()
	s.Ports = fmt.Sprintf("%d-%d", base, base+n-1)
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()

	t0 := time.Now()
	for _, d := range []string{"conf", "run", "log"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return s, err
		}
	}
	for i := 0; i < n; i++ {
		port := base + i
		if err := os.MkdirAll(filepath.Join(root, "db", "redis_"+strconv.Itoa(port)), 0o755); err != nil {
			return s, err
		}
		conf := filepath.Join(root, "conf", "redis_"+strconv.Itoa(port)+".conf")
		if err := os.WriteFile(conf, []byte(handConf(root, port)), 0o644); err != nil {
			return s, err
		}
		cmd := exec.Command(cfg.redisServer, conf)
		cmd.SysProcAttr = childAttr()
		if err := cmd.Start(); err != nil {
			return s, fmt.Errorf("start node %d: %w", port, err)
		}
		kids.add(cmd)
	}
	addrs := addrsFor(base, n)
	pr := newProber(addrs)
	defer pr.Close()
	if err := pr.waitPing(ctx); err != nil {
		return s, err
	}
	t1 := time.Now()

	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	create := exec.CommandContext(ctx, cfg.redisCli, args...)
	create.SysProcAttr = childAttr()
	create.WaitDelay = time.Second
	out, err := create.CombinedOutput()
	if err != nil {
		return s, fmt.Errorf("redis-cli --cluster create on %s: %w\n%s", s.Ports, err, tailBytes(out, 1500))
	}
	t2 := time.Now()

	end, sweep, err := pr.waitUsable(ctx)
	if err != nil {
		return s, fmt.Errorf("cluster on %s after create: %w", s.Ports, err)
	}
	s.TotalMS = ms(end.Sub(t0))
	s.SpawnMS = ms(t1.Sub(t0))
	s.CreateMS = ms(t2.Sub(t1))
	s.SettleMS = ms(end.Sub(t2))
	s.SweepMS = ms(sweep)
	return s, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func tailBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
