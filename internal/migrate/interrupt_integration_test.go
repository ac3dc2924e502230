package migrate

import (
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
	"github.com/rcluster/rcluster/internal/topology"
)

// Test 4: a Migrate cancelled after its slots opened and some keys moved
// leaves open slots that Open reports and Finish completes, losing no key.
func TestInterruptedMigrateThenFinish(t *testing.T) {
	c := startCluster(t, 3, 0)
	data := c.fill(5000)
	slots := []int{200, 201, 202, 203, 204}
	for _, s := range slots {
		for k, v := range c.fillSlot(s, 3000) {
			data[k] = v
		}
	}
	before := c.dbsize()
	src := c.ownerOf(200)
	dst := c.other(src.ID)
	var moves []Move
	for _, s := range slots {
		moves = append(moves, Move{Slot: s, From: src.ID, To: dst.ID})
	}
	ctx, cancel := context.WithCancel(testCtx(t, 60*time.Second))
	done := make(chan error, 1)
	go func() {
		// Small batches, two slots at a time: the move takes long enough
		// to be caught in the middle.
		_, err := Migrate(ctx, c.addrs, c.conn, moves, Options{Batch: 10, Parallel: 2})
		done <- err
	}()
	// Cancel once the target holds some keys of a slot: opened, half done.
	target := c.client(dst.Addr)
	b := poll.Backoff{Min: time.Millisecond, Max: 10 * time.Millisecond}
	for {
		n, err := target.ClusterCountKeysInSlot(ctx, 200).Result()
		if err == nil && n > 100 {
			break
		}
		if b.Wait(ctx) != nil {
			t.Fatal("the migration never moved a key")
		}
	}
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled migrate returned %v, want context.Canceled", err)
	}
	t.Logf("cancelled migrate: %v", err)

	octx := testCtx(t, 60*time.Second)
	open, err := Open(octx, c.addrs, c.conn)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) == 0 {
		t.Fatal("Open reports no open slot after the interruption")
	}
	half := false
	for _, o := range open {
		t.Logf("open: %v", o)
		if o.Source.ID != src.ID || o.Target.ID != dst.ID || o.Problem != "" || !o.Importing {
			t.Errorf("open slot %v: want %s -> %s, importing, no problem", o, src.Addr, dst.Addr)
		}
		if o.Migrating && o.SourceKeys > 0 && o.TargetKeys > 0 {
			half = true
		}
	}
	if !half {
		t.Errorf("no open slot has keys on both sides: the interruption was not mid-move")
	}
	res, err := Finish(octx, c.addrs, c.conn, Options{})
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	t.Logf("finish: %v", res)
	if len(res.Moves) != len(open) {
		t.Errorf("finish completed %d slots, %d were open", len(res.Moves), len(open))
	}
	c.assertAgreed()
	if after := c.dbsize(); after != before {
		t.Errorf("%d keys after finish, %d before", after, before)
	}
	c.assertData(data)
	// The slots Finish did not see open were either done or never
	// started: the same moves without From skip the done ones and
	// complete the rest.
	for i := range moves {
		moves[i].From = ""
	}
	if res, err = Migrate(octx, c.addrs, c.conn, moves, Options{}); err != nil {
		t.Fatalf("migrate the rest: %v", err)
	}
	t.Logf("migrate the rest: %v", res)
	for _, s := range slots {
		if o := c.ownerOf(s); o.ID != dst.ID {
			t.Errorf("slot %d owned by %s, want %s", s, o.Addr, dst.Addr)
		}
	}
	c.assertAgreed()
	c.assertData(data)
}

// Finish repairs each interrupted state by hand-made SETSLOTs on real
// nodes, all at once: importing on the target only (the source was never
// told), migrating on the source only with keys already on the target
// (the target lost its state), and finalised on the target only (the
// source still migrating, empty).
func TestFinishRepairsEachState(t *testing.T) {
	c := startCluster(t, 3, 0)
	ctx := testCtx(t, 60*time.Second)
	const onlyImporting, onlyMigrating, finalisedOnTarget = 300, 301, 302
	data := map[string]string{}
	for _, s := range []int{onlyImporting, onlyMigrating, finalisedOnTarget} {
		for k, v := range c.fillSlot(s, 20) {
			data[k] = v
		}
	}
	before := c.dbsize()
	src := c.ownerOf(onlyImporting)
	dst := c.other(src.ID)
	S, T := c.client(src.Addr), c.client(dst.Addr)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	migrateAll := func(slot int, n int) {
		keys, err := S.ClusterGetKeysInSlot(ctx, slot, n).Result()
		must(err)
		args := []any{"MIGRATE", dst.IP(), dst.Port(), "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		must(S.Do(ctx, args...).Err())
	}
	// 300: step 1 only.
	must(T.Do(ctx, "CLUSTER", "SETSLOT", onlyImporting, "IMPORTING", src.ID).Err())
	// 301: opened, 8 keys moved, then the target forgot (STABLE).
	must(T.Do(ctx, "CLUSTER", "SETSLOT", onlyMigrating, "IMPORTING", src.ID).Err())
	must(S.Do(ctx, "CLUSTER", "SETSLOT", onlyMigrating, "MIGRATING", dst.ID).Err())
	migrateAll(onlyMigrating, 8)
	must(T.Do(ctx, "CLUSTER", "SETSLOT", onlyMigrating, "STABLE").Err())
	// 302: every key moved, finalised on the target only.
	must(T.Do(ctx, "CLUSTER", "SETSLOT", finalisedOnTarget, "IMPORTING", src.ID).Err())
	must(S.Do(ctx, "CLUSTER", "SETSLOT", finalisedOnTarget, "MIGRATING", dst.ID).Err())
	migrateAll(finalisedOnTarget, 100)
	must(T.Do(ctx, "CLUSTER", "SETSLOT", finalisedOnTarget, "NODE", dst.ID).Err())
	// The target's claim reaches the others by its PONG broadcast: read the
	// state only once every node has it, or Open sees the claim half
	// propagated ("claimed by several nodes"), a different (transient) state.
	for b := (poll.Backoff{}); ; {
		views, _ := c.views()
		heard := 0
		for _, v := range views {
			for _, n := range v {
				if n.ID == dst.ID && n.Owns(finalisedOnTarget) {
					heard++
				}
			}
		}
		if heard == len(views) {
			break
		}
		if err := b.Wait(ctx); err != nil {
			t.Fatalf("the target's claim of slot %d reached %d of %d nodes: %v", finalisedOnTarget, heard, len(views), err)
		}
	}

	open, err := Open(ctx, c.addrs, c.conn)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]OpenSlot{
		onlyImporting:     {Slot: onlyImporting, Importing: true, SourceKeys: 20},
		onlyMigrating:     {Slot: onlyMigrating, Migrating: true, SourceKeys: 12, TargetKeys: 8},
		finalisedOnTarget: {Slot: finalisedOnTarget, Migrating: true, Finalised: true, TargetKeys: 20},
	}
	if len(open) != len(want) {
		t.Errorf("Open = %v, want 3 slots", open)
	}
	for _, o := range open {
		t.Logf("open: %v", o)
		w := want[o.Slot]
		w.Source.ID, w.Source.Addr, w.Target.ID, w.Target.Addr = src.ID, src.Addr, dst.ID, dst.Addr
		if o != w {
			t.Errorf("Open slot %d = %+v\nwant %+v", o.Slot, o, w)
		}
	}
	res, err := Finish(ctx, c.addrs, c.conn, Options{})
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	t.Logf("finish: %v", res)
	c.assertAgreed()
	for _, s := range []int{onlyImporting, onlyMigrating, finalisedOnTarget} {
		if o := c.ownerOf(s); o.ID != dst.ID {
			t.Errorf("slot %d owned by %s, want %s", s, o.Addr, dst.Addr)
		}
		if n := countIn(t, T, s); n != 20 {
			t.Errorf("target holds %d keys of slot %d, want 20", n, s)
		}
	}
	if after := c.dbsize(); after != before {
		t.Errorf("%d keys after finish, %d before", after, before)
	}
	c.assertData(data)
}

// The source is SIGKILLed in the middle of a Migrate and restarted from
// its own files (AOF with appendfsync always, so the kill itself loses no
// write; nodes.conf keeps its MIGRATING state): Migrate fails, Open reports
// the slots, and Finish completes them without losing a key.
func TestSourceKilledMidMigrationThenFinish(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 3, "--cluster-node-timeout", "5000", "--appendonly", "yes", "--appendfsync", "always")
	redistest.CreateCluster(t, nodes, 0)
	c := &tc{t: t, nodes: nodes, addrs: redistest.Addrs(nodes), conn: redisconn.Options{Timeout: 2 * time.Second}, cls: map[string]*redis.Client{}}
	c.cc = c.conn.Cluster(c.addrs)
	t.Cleanup(func() { c.cc.Close() })
	data := c.fill(2000)
	slots := []int{200, 201, 202, 203}
	for _, s := range slots {
		for k, v := range c.fillSlot(s, 2000) {
			data[k] = v
		}
	}
	before := c.dbsize()
	src := c.ownerOf(200)
	dst := c.other(src.ID)
	var srcNode *redistest.Node
	for _, n := range nodes {
		if n.Addr == src.Addr {
			srcNode = n
		}
	}
	var moves []Move
	for _, s := range slots {
		moves = append(moves, Move{Slot: s, From: src.ID, To: dst.ID})
	}
	ctx := testCtx(t, 90*time.Second)
	done := make(chan error, 1)
	go func() {
		_, err := Migrate(ctx, c.addrs, c.conn, moves, Options{Batch: 10, Parallel: 2})
		done <- err
	}()
	b := poll.Backoff{Min: time.Millisecond, Max: 10 * time.Millisecond}
	for {
		n, err := c.client(dst.Addr).ClusterCountKeysInSlot(ctx, 200).Result()
		if err == nil && n > 100 {
			break
		}
		if b.Wait(ctx) != nil {
			t.Fatal("the migration never moved a key")
		}
	}
	srcNode.Kill()
	err := <-done
	if err == nil {
		t.Fatal("migrate returned no error although its source was killed")
	}
	t.Logf("migrate with its source killed: %.300s", err)

	// Restart the source from its files, as its supervisor would.
	cmd := exec.Command(srcNode.Cmd.Path, srcNode.Cmd.Args[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	srcNode.Cmd = cmd // killed at cleanup by redistest
	b = poll.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	for ok := false; !ok; {
		ok = true
		for _, a := range c.addrs {
			info, err := c.client(a).ClusterInfo(ctx).Result()
			if err != nil || topology.ParseInfo(info)["cluster_state"] != "ok" {
				ok = false
			}
		}
		if !ok && b.Wait(ctx) != nil {
			t.Fatal("the cluster never came back after the restart")
		}
	}
	open, err := Open(ctx, c.addrs, c.conn)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) == 0 {
		t.Fatal("Open reports no open slot after the source was killed mid-migration")
	}
	for _, o := range open {
		t.Logf("open: %v", o)
		if o.Problem != "" {
			t.Errorf("open slot %d: problem %q", o.Slot, o.Problem)
		}
	}
	res, err := Finish(ctx, c.addrs, c.conn, Options{})
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	t.Logf("finish: %v", res)
	c.assertAgreed()
	if after := c.dbsize(); after != before {
		t.Errorf("%d keys after finish, %d before", after, before)
	}
	c.assertData(data)
}
