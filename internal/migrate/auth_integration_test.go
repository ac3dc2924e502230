package migrate

import (
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/topology"
)

// MIGRATE carries rcluster's credentials to the target: the default
// user's password (AUTH) and an ACL user (AUTH2), on nodes that require
// them (switched on after the cluster is formed: redistest and redis-cli
// form it without a password).
func TestMigrateWithAuth(t *testing.T) {
	c := startCluster(t, 3, 0)
	ctx := testCtx(t, 60*time.Second)
	data := c.fill(3000)
	a := c.ownerOf(0)
	b := c.other(a.ID)
	const pw = "s3cret"
	for _, addr := range c.addrs {
		cl := c.client(addr)
		for _, cmd := range [][]any{
			{"ACL", "SETUSER", "mover", "on", ">mover-pw", "~*", "&*", "+@all"},
			{"CONFIG", "SET", "masterauth", pw},
			{"CONFIG", "SET", "requirepass", pw},
		} {
			if err := cl.Do(ctx, cmd...).Err(); err != nil {
				t.Fatalf("%s: %v: %v", addr, cmd[:2], err)
			}
		}
	}
	// Without credentials nothing is read, let alone moved.
	if _, err := Migrate(ctx, c.addrs, c.conn, rangeMoves(0, 9, a.ID, b.ID), Options{}); err == nil {
		t.Fatal("migrate without credentials on nodes that require them: no error")
	}
	cases := []struct {
		name        string
		conn        redisconn.Options
		first, last int
	}{
		{"AUTH (default user's password)", redisconn.Options{Password: pw, Timeout: 2 * time.Second}, 0, 499},
		{"AUTH2 (ACL user)", redisconn.Options{Username: "mover", Password: "mover-pw", Timeout: 2 * time.Second}, 500, 999},
	}
	for _, tc := range cases {
		res, err := Migrate(ctx, c.addrs, tc.conn, rangeMoves(tc.first, tc.last, a.ID, b.ID), Options{})
		if err != nil {
			t.Fatalf("%s: migrate: %v", tc.name, err)
		}
		if res.Keys == 0 || len(res.Moves) != tc.last-tc.first+1 {
			t.Errorf("%s: %v, want %d slots and some keys", tc.name, res, tc.last-tc.first+1)
		}
		t.Logf("%s: %v", tc.name, res)
	}
	conn := cases[0].conn
	cc := conn.Cluster(c.addrs)
	defer cc.Close()
	bad := 0
	for k, v := range data {
		if got, err := cc.Get(ctx, k).Result(); err != nil || got != v {
			if bad++; bad <= 3 {
				t.Errorf("key %s: %.20q, %v", k, got, err)
			}
		}
	}
	tgt := conn.Node(b.Addr)
	defer tgt.Close()
	want := 0
	for k := range data {
		if topology.HashSlot(k) < 1000 {
			want++
		}
	}
	got := 0
	for s := range 1000 {
		n, err := tgt.ClusterCountKeysInSlot(ctx, s).Result()
		if err != nil {
			t.Fatal(err)
		}
		got += int(n)
	}
	if got != want {
		t.Errorf("target holds %d keys of slots 0-999, want %d", got, want)
	}
}
