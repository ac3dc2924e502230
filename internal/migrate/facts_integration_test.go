package migrate

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/poll"
	"github.com/rcluster/rcluster/internal/topology"
)

// The engine's design rests on these Redis 7.0 behaviours; each is checked
// on real nodes here so that a Redis that changes one fails this test.
func TestRedisFactsTheDesignRestsOn(t *testing.T) {
	c := startCluster(t, 3, 0)
	ctx := testCtx(t, 30*time.Second)
	ms := c.masters()
	S, T := ms[0], ms[1]
	sc, tcl := c.client(S.Addr), c.client(T.Addr)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	key := func(slot int, n string) string { return "{" + topology.KeyForSlot(slot) + "}" + n }
	migrate := func(from *redis.Client, to topology.Node, keys ...string) error {
		return from.Do(ctx, migrateArgs(to, 5*time.Second, c.conn, false, keys)...).Err()
	}
	slot, slot2 := S.Slots[0].Start, S.Slots[0].Start+1
	a, b, x := key(slot, "a"), key(slot, "b"), key(slot2, "x")
	for _, k := range []string{a, b, x} {
		must(sc.Set(ctx, k, "v", 0).Err())
	}

	// One MIGRATE carries keys of one slot only (so one per slot).
	if err := migrate(sc, T, a, x); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
		t.Errorf("MIGRATE of two slots' keys: %v, want CROSSSLOT", err)
	}

	must(tcl.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", S.ID).Err())
	must(sc.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", T.ID).Err())
	must(migrate(sc, T, a))

	// The target serves MIGRATE of a slot it imports, but a MIGRATING
	// source refuses a key it does not hold with ASK: keys cannot go back
	// while the slot is open (why Abort moves forward, then back).
	err := migrate(tcl, S, a)
	if err == nil || !strings.Contains(err.Error(), "ASK") {
		t.Errorf("MIGRATE back to a migrating source: %v, want an ASK error", err)
	}
	// The target answers GETKEYSINSLOT for a slot it does not own.
	if keys, err := tcl.ClusterGetKeysInSlot(ctx, slot, 10).Result(); err != nil || len(keys) != 1 || keys[0] != a {
		t.Errorf("GETKEYSINSLOT on the importing target: %v, %v; want [%s]", keys, err, a)
	}

	// Finalising the target while the source still holds a key makes the
	// source drop it as soon as it hears the claim (trap 1: why finalise
	// checks the source is empty first).
	must(tcl.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", T.ID).Err())
	wctx := testCtx(t, 5*time.Second)
	bo := poll.Backoff{Min: time.Millisecond, Max: 20 * time.Millisecond}
	for n := countIn(t, sc, slot); n != 0; n = countIn(t, sc, slot) {
		if bo.Wait(wctx) != nil {
			t.Fatalf("source still holds %d keys of the slot finalised on the target, want them dropped", n)
		}
	}
}
