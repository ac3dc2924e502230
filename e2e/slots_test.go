package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/topology"
)

// These tests move slots under a running client, through the built
// binary: migrate, reshard, rebalance and scaling by editing the spec. The
// guarantee: no acknowledged write is lost, no read of an acknowledged key
// returns nil, and when a command returns every node agrees, no slot is
// open, all 16384 are covered and redis-cli --cluster check passes.

// workload writes (new keys and overwrites) and reads acknowledged keys
// through a go-redis ClusterClient without pause, counting what matters.
type workload struct {
	mu       sync.Mutex
	last     map[string]int // acknowledged key -> last acknowledged value
	keys     []string
	nilReads atomic.Int64
	reads    atomic.Int64
	errs     atomic.Int64
	cancel   context.CancelFunc
	done     chan struct{}
}

func startWorkload(t *testing.T, addrs []string) *workload {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	w := &workload{last: map[string]int{}, cancel: cancel, done: make(chan struct{})}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, MaxRedirects: 16})
	first := make(chan struct{}) // closed at the first acknowledged write
	var once sync.Once
	var wg sync.WaitGroup
	wg.Go(func() { // writer
		for i := 0; i < 1_000_000 && ctx.Err() == nil; i++ {
			k, v := fmt.Sprintf("load:%d", i), i
			w.mu.Lock()
			if i%3 == 2 && len(w.keys) > 0 { // overwrite an acknowledged key
				k = w.keys[rand.IntN(len(w.keys))]
			}
			w.mu.Unlock()
			if err := rdb.Set(ctx, k, v, 0).Err(); err != nil {
				w.errs.Add(1)
				continue
			}
			w.mu.Lock()
			if _, ok := w.last[k]; !ok {
				w.keys = append(w.keys, k)
			}
			w.last[k] = v
			w.mu.Unlock()
			once.Do(func() { close(first) })
		}
	})
	wg.Go(func() { // reader
		select {
		case <-first:
		case <-ctx.Done():
			return
		}
		for i := 0; i < 1_000_000 && ctx.Err() == nil; i++ {
			w.mu.Lock()
			k := w.keys[rand.IntN(len(w.keys))]
			w.mu.Unlock()
			err := rdb.Get(ctx, k).Err()
			switch {
			case errors.Is(err, redis.Nil):
				w.nilReads.Add(1)
			case err == nil:
				w.reads.Add(1)
			}
		}
	})
	go func() {
		wg.Wait()
		rdb.Close()
		close(w.done)
	}()
	t.Cleanup(func() { w.cancel(); <-w.done })
	return w
}

// stop ends the workload and checks every acknowledged write with a fresh
// client: lost must be zero, and so must reads that returned nil.
func (w *workload) stop(t *testing.T, addrs []string) {
	t.Helper()
	w.cancel()
	<-w.done
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer rdb.Close()
	lost, stale := 0, 0
	for k, v := range w.last {
		got, err := rdb.Get(ctx, k).Int()
		switch {
		case errors.Is(err, redis.Nil):
			lost++
		case err != nil:
			t.Fatalf("GET %s: %v", k, err)
		case got != v:
			stale++
		}
	}
	t.Logf("workload: %d keys acknowledged, %d reads, %d write errors while slots moved; lost %d, stale %d, nil reads %d",
		len(w.last), w.reads.Load(), w.errs.Load(), lost, stale, w.nilReads.Load())
	if len(w.last) < 100 || w.reads.Load() < 100 {
		t.Fatalf("the workload hardly ran: %d keys, %d reads", len(w.last), w.reads.Load())
	}
	if lost != 0 || stale != 0 || w.nilReads.Load() != 0 {
		t.Fatalf("acknowledged writes lost: %d, with an older value: %d, reads of acknowledged keys that returned nil: %d (all must be 0)",
			lost, stale, w.nilReads.Load())
	}
}

// preload writes n keys spread over all slots, pipelined.
func preload(t *testing.T, addrs []string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer rdb.Close()
	for b := 0; b < n; b += 1000 {
		pipe := rdb.Pipeline()
		for i := b; i < min(b+1000, n); i++ {
			pipe.Set(ctx, fmt.Sprintf("pre:%d", i), strings.Repeat("x", 100), 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatalf("preload: %v", err)
		}
	}
}

// settled is what must hold right after a slot command returns: every
// node agrees, no slot open, all covered, redis-cli --cluster check OK.
func settled(t *testing.T, ports []int) {
	t.Helper()
	v := agreeNow(t, addrsOf(ports))
	if gaps := topology.Uncovered(v); len(gaps) > 0 {
		t.Errorf("slots not covered: %v", gaps)
	}
	for _, n := range v {
		if open := n.OpenSlots(); len(open) > 0 {
			t.Errorf("%s has open slots %v", n.Addr, open)
		}
	}
	clusterCheck(t, ports[0])
}

func dbsizes(t *testing.T, ports []int) int64 {
	t.Helper()
	var total int64
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, p := range ports {
		rdb := redis.NewClient(&redis.Options{Addr: addr(p)})
		info, err := rdb.Info(ctx, "replication").Result()
		n, err2 := rdb.DBSize(ctx).Result()
		rdb.Close()
		if err != nil || err2 != nil {
			t.Fatalf("%s: %v %v", addr(p), err, err2)
		}
		if strings.Contains(info, "role:master") {
			total += n
		}
	}
	return total
}

func setPorts(t *testing.T, dir string, from, to int) {
	t.Helper()
	path := filepath.Join(dir, "cluster.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Replace(string(b), fmt.Sprintf("-%d\"", from), fmt.Sprintf("-%d\"", to), 1)
	if out == string(b) {
		t.Fatalf("ports -%d not in the spec:\n%s", from, b)
	}
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSlotMovesLoseNoAcknowledgedWrite: with a client writing and reading
// without pause, migrate, reshard, rebalance and a scale from 3 to 6
// masters and back (by editing the spec and running up) lose nothing.
func TestSlotMovesLoseNoAcknowledgedWrite(t *testing.T) {
	// Six ports reserved, the spec lists the first three.
	dir, ports := writeSpec(t, 6, 0, "")
	setPorts(t, dir, ports[5], ports[2])
	three := ports[:3]
	mustRun(t, dir, "up")
	preload(t, addrsOf(three), 20000)
	w := startWorkload(t, addrsOf(three))

	r := mustRun(t, dir, "migrate", "--slots", "0-999,5000", "--to", strconv.Itoa(three[2]))
	t.Logf("migrate: %s", strings.TrimSpace(r.stderr))
	settled(t, three)
	r = mustRun(t, dir, "reshard", "--from", strconv.Itoa(three[0]), "--to", strconv.Itoa(three[1]), "--slots", "2000")
	t.Logf("reshard: %s", firstLine(r.stderr))
	settled(t, three)
	r = mustRun(t, dir, "rebalance")
	t.Logf("rebalance: %s", firstLine(r.stderr))
	settled(t, three)

	setPorts(t, dir, ports[2], ports[5])
	r = mustRun(t, dir, "up", "-v")
	t.Logf("scale 3 -> 6: %s", lastLines(r.stderr, 6))
	settled(t, ports)
	for _, n := range statusNodes(t, dir) {
		if n.Role != "master" || n.Slots == "" {
			t.Errorf("after scaling to 6 masters: %s is %s with slots %q", n.Addr, n.Role, n.Slots)
		}
	}
	setPorts(t, dir, ports[5], ports[2])
	r = mustRun(t, dir, "up", "-v")
	t.Logf("scale 6 -> 3: %s", lastLines(r.stderr, 6))
	settled(t, three)
	if st := status(t, dir); len(st) != 3 {
		t.Errorf("status after scaling back lists %d nodes", len(st))
	}
	assertNothingLeft(t, ports[3:])

	w.stop(t, addrsOf(three))
	if got, want := dbsizes(t, three), int64(20000+len(w.last)); got != want {
		t.Errorf("keys after all moves: %d, want %d (20000 preloaded + %d written)", got, want, len(w.last))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// TestMigrateHoldGivesRealASKAndTryagain: with --hold, a plain client gets
// -ASK from the source for a moved key, a cluster client reads and writes
// every key, a multi-key command over split keys gets TRYAGAIN; --finish
// completes it; bad input exits 2 changing nothing.
func TestMigrateHoldGivesRealASKAndTryagain(t *testing.T) {
	dir, ports := writeSpec(t, 3, 0, "")
	mustRun(t, dir, "up")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const slot = 42
	tag := "{" + topology.KeyForSlot(slot) + "}"
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrsOf(ports)})
	defer cc.Close()
	for i := range 200 {
		if err := cc.Set(ctx, fmt.Sprintf("%s:%d", tag, i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range [][]string{
		{"migrate", "--slots", "16384", "--to", strconv.Itoa(ports[1])},
		{"migrate", "--slots", "42", "--to", "127.0.0.1:1"},
		{"reshard", "--from", strconv.Itoa(ports[1]), "--to", strconv.Itoa(ports[1]), "--slots", "10"},
	} {
		if r := rcluster(t, dir, bad...); r.code != 2 {
			t.Errorf("rcluster %s: exit %d, want 2:\n%s", strings.Join(bad, " "), r.code, r.stderr)
		}
	}
	settled(t, ports)

	mustRun(t, dir, "migrate", "--slots", strconv.Itoa(slot), "--to", strconv.Itoa(ports[1]), "--hold")
	// Which keys moved? The target holds them.
	target := redis.NewClient(&redis.Options{Addr: addr(ports[1])})
	defer target.Close()
	source := redis.NewClient(&redis.Options{Addr: addr(ports[0])})
	defer source.Close()
	moved, err := target.ClusterGetKeysInSlot(ctx, slot, 1000).Result()
	if err != nil || len(moved) == 0 || len(moved) == 200 {
		t.Fatalf("with --hold the target holds %d of 200 keys (%v), want some but not all", len(moved), err)
	}
	err = source.Get(ctx, moved[0]).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "ASK "+strconv.Itoa(slot)+" "+addr(ports[1])) {
		t.Errorf("plain GET of a moved key on the source: %v, want -ASK %d %s", err, slot, addr(ports[1]))
	}
	for i := range 200 {
		k := fmt.Sprintf("%s:%d", tag, i)
		if v, err := cc.Get(ctx, k).Int(); err != nil || v != i {
			t.Fatalf("cluster client GET %s during the held migration: %v, %v", k, v, err)
		}
		if err := cc.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatalf("cluster client SET %s during the held migration: %v", k, err)
		}
	}
	var stay string
	for i := range 200 {
		k := fmt.Sprintf("%s:%d", tag, i)
		if !containsStr(moved, k) {
			stay = k
			break
		}
	}
	pipe := target.Pipeline()
	pipe.Do(ctx, "ASKING")
	mg := pipe.MGet(ctx, moved[0], stay)
	_, _ = pipe.Exec(ctx)
	if err := mg.Err(); err == nil || !strings.HasPrefix(err.Error(), "TRYAGAIN") {
		t.Errorf("MGET of a moved and an unmoved key of the held slot: %v, want TRYAGAIN", err)
	}
	if r := rcluster(t, dir, "status"); r.code != 1 || !strings.Contains(r.stderr, "migrating") ||
		!strings.Contains(r.stdout, fmt.Sprintf("migrating slot %d: %s -> %s", slot, addr(ports[0]), addr(ports[1]))) {
		t.Errorf("status during a held migration: exit %d, want 1 naming the open slot:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var vj struct {
		Open []struct {
			Slot        int
			Node, State string
		} `json:"open_slots"`
	}
	r := rcluster(t, dir, "verify", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &vj); err != nil || r.code != 1 || len(vj.Open) != 2 || vj.Open[0].Slot != slot {
		t.Errorf("verify --json during a held migration: exit %d, open_slots %+v (%v)", r.code, vj.Open, err)
	}
	mustRun(t, dir, "migrate", "--finish")
	settled(t, ports)
	if n, err := target.ClusterCountKeysInSlot(ctx, slot).Result(); err != nil || n != 200 {
		t.Errorf("after --finish the target holds %d keys of slot %d, want 200 (%v)", n, slot, err)
	}
	// Holding a slot on its own owner would open nothing: a usage error.
	if r := rcluster(t, dir, "migrate", "--slots", strconv.Itoa(slot), "--to", strconv.Itoa(ports[1]), "--hold"); r.code != 2 ||
		!strings.Contains(r.stderr, "nothing to hold") {
		t.Errorf("migrate --hold of a slot to its owner: exit %d, want 2 saying nothing to hold:\n%s", r.code, r.stderr)
	}
	settled(t, ports)
}

func containsStr(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// TestInterruptedMigrationRepairedByUp: rcluster killed with SIGKILL in
// the middle of a migration leaves open slots that verify names, and the
// next `rcluster up` completes them without losing a key.
func TestInterruptedMigrationRepairedByUp(t *testing.T) {
	dir, ports := writeSpec(t, 3, 0, "")
	mustRun(t, dir, "up")
	preload(t, addrsOf(ports), 30000)
	cmd := exec.Command(binary, "migrate", "--slots", "0-5460", "--to", strconv.Itoa(ports[2]))
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it as soon as the source shows a slot migrating.
	src := redis.NewClient(&redis.Options{Addr: addr(ports[0])})
	defer src.Close()
	killed := false
	for i := 0; i < 2000 && !killed; i++ {
		txt, _ := src.ClusterNodes(context.Background()).Result()
		if strings.Contains(txt, "->-") {
			_ = cmd.Process.Kill()
			killed = true
		}
	}
	_ = cmd.Wait()
	if !killed {
		t.Fatal("the migration never showed an open slot")
	}
	r := rcluster(t, dir, "verify")
	if r.code != 1 || !strings.Contains(r.stderr, "migrating to") {
		t.Errorf("verify after rcluster was killed mid-migration: exit %d, want 1 naming the open slots:\n%s", r.code, r.stderr)
	}
	r = mustRun(t, dir, "up")
	if !strings.Contains(r.stderr, "interrupted slot migration") {
		t.Errorf("up did not say it completed the interrupted migration:\n%s", r.stderr)
	}
	settled(t, ports)
	if got := dbsizes(t, ports); got != 30000 {
		t.Errorf("keys after the repair: %d, want 30000", got)
	}
}

// TestScaleReplicasBySpec: replicas 0 -> 1 on the same six ports drains
// three masters into the other three and makes them their replicas, and
// replicas 1 -> 0 makes those replicas masters again (forgotten, reset,
// rejoined, given slots), with a client writing throughout and no
// acknowledged write lost.
func TestScaleReplicasBySpec(t *testing.T) {
	dir, ports := writeSpec(t, 6, 0, "")
	mustRun(t, dir, "up")
	preload(t, addrsOf(ports), 5000)
	w := startWorkload(t, addrsOf(ports))
	path := filepath.Join(dir, "cluster.yaml")
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), "replicas: 0", "replicas: 1", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, dir, "up")
	settled(t, ports)
	roles := map[string]int{}
	for _, n := range statusNodes(t, dir) {
		roles[n.Role]++
	}
	if roles["master"] != 3 || roles["replica"] != 3 {
		t.Errorf("after replicas 0 -> 1: roles %v, want 3 masters and 3 replicas", roles)
	}

	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := rcluster(t, dir, "up", "--dry-run"); r.code != 0 || !strings.Contains(r.stdout+r.stderr, "replicas made empty masters") {
		t.Errorf("up --dry-run for replicas 1 -> 0: exit %d, want the plan naming the replicas made masters:\n%s%s", r.code, r.stdout, r.stderr)
	}
	r := mustRun(t, dir, "up", "-v")
	t.Logf("replicas 1 -> 0: %s", lastLines(r.stderr, 8))
	settled(t, ports)
	for _, n := range statusNodes(t, dir) {
		if n.Role != "master" || n.Slots == "" {
			t.Errorf("after replicas 1 -> 0: %s is %s with slots %q, want a master with slots", n.Addr, n.Role, n.Slots)
		}
	}
	w.stop(t, addrsOf(ports))
	if got, want := dbsizes(t, ports), int64(5000+len(w.last)); got != want {
		t.Errorf("keys after both reshapes: %d, want %d (5000 preloaded + %d written)", got, want, len(w.last))
	}
}

// TestKillSourceOfHeldMigration: `node kill --wait-failover` of the source
// of a held migration returns once the replica took over with the
// migration carried over to it (still held: -ASK from the new master for a
// moved key), and `migrate --finish` then completes it with every key.
func TestKillSourceOfHeldMigration(t *testing.T) {
	dir, ports := writeSpec(t, 6, 1, fastFailover)
	mustRun(t, dir, "up")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const slot = 42 // the first master's
	tag := "{" + topology.KeyForSlot(slot) + "}"
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrsOf(ports)})
	defer cc.Close()
	var keys []string
	for i := range 200 {
		k := fmt.Sprintf("%s:%d", tag, i)
		if err := cc.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	// Every key on the source's replica before the kill (replication is
	// asynchronous: an unshipped write would be lost by Redis's design).
	var replica int
	view := agreeNow(t, addrsOf(ports))
	for _, m := range view {
		for _, n := range view {
			if m.Addr == addr(ports[0]) && m.IsMaster() && n.IsReplica() && n.MasterID == m.ID {
				replica = n.Port()
			}
		}
	}
	if replica == 0 {
		t.Fatalf("no replica of %s", addr(ports[0]))
	}
	rc := redis.NewClient(&redis.Options{Addr: addr(replica)})
	defer rc.Close()
	for i := 0; ; i++ {
		if n, err := rc.ClusterCountKeysInSlot(ctx, slot).Result(); err == nil && n == 200 {
			break
		}
		if i == 400 {
			t.Fatalf("the replica %s never held the 200 keys", addr(replica))
		}
		time.Sleep(5 * time.Millisecond)
	}

	mustRun(t, dir, "migrate", "--slots", strconv.Itoa(slot), "--to", strconv.Itoa(ports[1]), "--hold")
	r := mustRun(t, dir, "node", "kill", strconv.Itoa(ports[0]), "--wait-failover")
	t.Logf("kill: %s", strings.TrimSpace(r.stderr+r.stdout))
	if !strings.Contains(r.stderr+r.stdout, fmt.Sprintf("open slots %d carried over to %s", slot, addr(replica))) {
		t.Errorf("node kill --wait-failover does not say it carried slot %d over to %s", slot, addr(replica))
	}
	moved, err := redis.NewClient(&redis.Options{Addr: addr(ports[1])}).ClusterGetKeysInSlot(ctx, slot, 1000).Result()
	if err != nil || len(moved) == 0 {
		t.Fatalf("keys of slot %d on the target: %d (%v)", slot, len(moved), err)
	}
	if err := rc.Get(ctx, moved[0]).Err(); err == nil || !strings.HasPrefix(err.Error(), "ASK "+strconv.Itoa(slot)+" "+addr(ports[1])) {
		t.Errorf("plain GET of a moved key on the new master: %v, want -ASK %d %s", err, slot, addr(ports[1]))
	}

	mustRun(t, dir, "migrate", "--finish")
	alive := slices.DeleteFunc(slices.Clone(ports), func(p int) bool { return p == ports[0] })
	v := agreeNow(t, addrsOf(alive))
	for _, n := range v {
		if len(n.OpenSlots()) > 0 {
			t.Errorf("%s has open slots %v after --finish", n.Addr, n.OpenSlots())
		}
	}
	// A fresh client: cc's slot map still names the killed node, which
	// refuses connections (go-redis reloads its map on MOVED, not on a
	// dial error).
	fresh := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrsOf(alive)})
	defer fresh.Close()
	for _, k := range keys {
		if err := fresh.Get(ctx, k).Err(); err != nil {
			t.Errorf("GET %s after --finish: %v", k, err)
		}
	}
	mustRun(t, dir, "up") // restarts the killed node
	settled(t, ports)
}
