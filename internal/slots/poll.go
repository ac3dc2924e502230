package slots

import (
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/redisconn"
)

// Polling: every wait in this package is a poll.Backoff (5ms doubling up to
// 100ms, or a larger Max for large clusters) under the caller's context.
// No fixed sleeps.
// parallel runs f(i) for i in [0,n) concurrently and waits for all.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			defer wg.Done()
			f(i)
		}()
	}
	wg.Wait()
}

// nodeClient is o.Node(addr) with go-redis's ContextTimeoutEnabled turned
// on, so a context deadline also bounds socket reads and writes (by default
// go-redis ignores it and only o.Timeout applies: a stopped node would hold
// every call for the full timeout past the caller's deadline). The option
// is read per call, so setting it before first use is safe.
//
// It also shrinks the connection buffers: go-redis gives every client a
// dedicated pipeline pool with 128 KiB read and write buffers per
// connection, plus 32 KiB ones in the main pool. Forming 100 nodes holds
// ~200 such clients at once (measured: rcluster up peaked at 90 MB RSS).
// Replies here are small (CLUSTER NODES of 300 nodes is ~35 KB and is read
// past the buffer anyway), so 4 KiB buffers and no pipeline pool (pipelines
// then use the main pool of 2) cost nothing in speed.
func nodeClient(o redisconn.Options, addr string) *redis.Client { return o.SmallNode(addr) }
