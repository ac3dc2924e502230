package slots

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
)

// The read in a master's own slots is part of readiness: a cluster health
// finds healthy, probed by a user who may run CLUSTER and INFO but not
// EXISTS, is not ready, and each master is named with the refused read.
func TestCheckReadyNeedsMastersToServeARead(t *testing.T) {
	redistest.Integration(t)
	nodes := redistest.Start(t, 4)
	redistest.CreateCluster(t, nodes, 0) // 4 masters
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := WaitReady(ctx, redistest.Addrs(nodes), 4, redisconn.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		c := redisconn.Options{}.Node(n.Addr)
		err := c.Do(ctx, "ACL", "SETUSER", "prober", "on", ">probe-pw", "+@connection", "+cluster|info", "+cluster|nodes", "+info", "~*").Err()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	nr := CheckReady(ctx, redistest.Addrs(nodes), 4, redisconn.Options{Username: "prober", Password: "probe-pw"})
	if len(nr) != 4 {
		t.Fatalf("CheckReady = %v, want all 4 masters", nr)
	}
	t.Logf("%s", FormatNotReady(nr[:1]))
	for i, n := range nr {
		if n.Addr != nodes[i].Addr || !strings.HasPrefix(n.Reason, "EXISTS rcluster:") || !strings.Contains(n.Reason, "NOPERM") {
			t.Errorf("CheckReady[%d] = %s, want %s refused EXISTS", i, n, nodes[i].Addr)
		}
	}
}
