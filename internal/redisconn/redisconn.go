// Package redisconn builds go-redis clients with rcluster's connection
// settings (auth, TLS, timeouts) so every package talks to nodes the same way.
package redisconn

import (
	"crypto/tls"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options are the connection settings shared by every rcluster command.
type Options struct {
	Username  string
	Password  string
	TLSConfig *tls.Config
	// Timeout bounds dialing and each read/write. Zero means 2s.
	Timeout time.Duration
	// NoRetry disables go-redis's retries and redirect-following retries,
	// so one command costs at most one Timeout.
	NoRetry bool
}

func (o Options) timeout() time.Duration {
	if o.Timeout <= 0 {
		return 2 * time.Second
	}
	return o.Timeout
}

// Node returns a single-connection-pool client to one node. It never
// retries: callers poll with their own deadlines.
func (o Options) Node(addr string) *redis.Client {
	t := o.timeout()
	return redis.NewClient(&redis.Options{
		Addr:            addr,
		Username:        o.Username,
		Password:        o.Password,
		TLSConfig:       o.TLSConfig,
		DialTimeout:     t,
		ReadTimeout:     t,
		WriteTimeout:    t,
		MaxRetries:      -1,
		DialerRetries:   1, // callers poll with their own backoff
		PoolSize:        2,
		DisableIdentity: true,
		Protocol:        2,
	})
}

// Cluster returns a cluster client seeded with addrs.
func (o Options) Cluster(addrs []string) *redis.ClusterClient {
	t := o.timeout()
	redirects := 0 // go-redis default (3)
	if o.NoRetry {
		redirects = -1
	}
	return redis.NewClusterClient(&redis.ClusterOptions{
		MaxRedirects:    redirects,
		DialerRetries:   2,
		Addrs:           addrs,
		Username:        o.Username,
		Password:        o.Password,
		TLSConfig:       o.TLSConfig,
		DialTimeout:     t,
		ReadTimeout:     t,
		WriteTimeout:    t,
		DisableIdentity: true,
		Protocol:        2,
	})
}

// CallTimeout is the bound for one call to one node.
func (o Options) CallTimeout() time.Duration { return o.timeout() }
