package migrate

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/failover"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

// TestBenchVsRedisCli moves one third of the slots (all 5461 of one
// master) of a 3-master cluster holding 100,000 keys of 100 bytes spread
// over all slots, once with Migrate and once with redis-cli --cluster
// reshard on an identical fresh cluster, and logs both (it asserts only
// that both end agreed, with every key). Set RCLUSTER_MIGRATE_BENCH=1 to
// run it; RCLUSTER_MIGRATE_BENCH_KEYS changes the key count.
func TestBenchVsRedisCli(t *testing.T) {
	if os.Getenv("RCLUSTER_MIGRATE_BENCH") != "1" {
		t.Skip("set RCLUSTER_MIGRATE_BENCH=1 to compare with redis-cli --cluster reshard")
	}
	keys := 100000
	if s := os.Getenv("RCLUSTER_MIGRATE_BENCH_KEYS"); s != "" {
		var err error
		if keys, err = strconv.Atoi(s); err != nil {
			t.Fatalf("RCLUSTER_MIGRATE_BENCH_KEYS: %v", err)
		}
	}
	type run struct {
		took, agreed time.Duration
		slots        int
	}
	bench := func(t *testing.T, move func(c *tc, from, to string) time.Duration) run {
		c := startCluster(t, 3, 0)
		data := c.fill(keys)
		before := c.dbsize()
		src := c.ownerOf(0)
		dst := c.other(src.ID)
		slots := 0
		for _, r := range src.Slots {
			slots += r.End - r.Start + 1
		}
		took := move(c, src.ID, dst.ID)
		start := time.Now()
		if _, err := failover.WaitConverged(testCtx(t, 60*time.Second), c.addrs, c.conn, failover.Want{}); err != nil {
			t.Fatalf("not agreed after the move: %v", err)
		}
		agreed := time.Since(start)
		c.assertAgreed()
		if after := c.dbsize(); after != before {
			t.Errorf("%d keys after, %d before", after, before)
		}
		c.assertData(data)
		return run{took, agreed, slots}
	}
	var ours, cli run
	t.Run("rcluster", func(t *testing.T) {
		ours = bench(t, func(c *tc, from, to string) time.Duration {
			var moves []Move
			for _, r := range c.ownerOf(0).Slots {
				moves = append(moves, rangeMoves(r.Start, r.End, from, to)...)
			}
			o := Options{}
			if p := os.Getenv("RCLUSTER_MIGRATE_BENCH_PARALLEL"); p != "" {
				o.Parallel, _ = strconv.Atoi(p)
			}
			start := time.Now()
			res, err := Migrate(testCtx(t, 5*time.Minute), c.addrs, c.conn, moves, o)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("migrate: %v", err)
			}
			t.Logf("migrate: %v", res)
			return took
		})
	})
	t.Run("redis-cli", func(t *testing.T) {
		cliBin := redistest.RequireBinary(t, "redis-cli")
		cli = bench(t, func(c *tc, from, to string) time.Duration {
			start := time.Now()
			out, err := exec.Command(cliBin, "--cluster", "reshard", c.addrs[0], "--cluster-from", from, "--cluster-to", to,
				"--cluster-slots", "5461", "--cluster-yes").CombinedOutput()
			took := time.Since(start)
			if err != nil {
				t.Fatalf("redis-cli reshard: %v\n%.2000s", err, out)
			}
			return took
		})
	})
	if ours.took == 0 || cli.took == 0 {
		return
	}
	per := func(r run) string {
		s := r.took.Seconds()
		return strconv.FormatFloat(float64(r.slots)/s, 'f', 0, 64) + " slots/s, " + strconv.FormatFloat(float64(keys)/3/s, 'f', 0, 64) + " keys/s"
	}
	t.Logf("%d keys of 100 bytes, %d slots moved (one master's third of the keys, ~%d keys):", keys, ours.slots, keys/3)
	t.Logf("  rcluster migrate (returns agreed):  %v  (%s); agreement already reached, re-check %v", ours.took.Round(time.Millisecond), per(ours), ours.agreed.Round(time.Millisecond))
	t.Logf("  redis-cli --cluster reshard:        %v  (%s); then every node agreed after %v more", cli.took.Round(time.Millisecond), per(cli), cli.agreed.Round(time.Millisecond))
	t.Logf("  speed-up: %.1fx (command to command), %.1fx (to every node agreeing)", cli.took.Seconds()/ours.took.Seconds(),
		(cli.took+cli.agreed).Seconds()/(ours.took+ours.agreed).Seconds())
}
