// Package redisconn builds go-redis clients with rcluster's connection
// settings (auth, TLS, timeouts) so every package talks to nodes the same way.
package redisconn

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options are the connection settings shared by every rcluster command.
// Build them from a spec with spec.(*Spec).ConnOptions. Printing Options
// (any fmt verb) never shows the password.
type Options struct {
	// Username is the ACL user; empty means the default user.
	Username string
	// Password is sent with AUTH on every new connection; empty: no AUTH.
	Password string
	// TLSConfig, when set, makes every connection TLS (trust roots and the
	// client certificate included).
	TLSConfig *tls.Config
	// Timeout bounds dialing and each read/write. Zero means 2s.
	Timeout time.Duration
	// NoRetry disables go-redis's retries and redirect-following retries,
	// so one command costs at most one Timeout.
	NoRetry bool
}

// String describes the options without the password.
func (o Options) String() string {
	pw := ""
	if o.Password != "" {
		pw = "[redacted]"
	}
	return fmt.Sprintf("{Username:%s Password:%s TLS:%t Timeout:%v NoRetry:%t}", o.Username, pw, o.TLSConfig != nil, o.Timeout, o.NoRetry)
}

// GoString keeps %#v from printing the password.
func (o Options) GoString() string { return "redisconn.Options" + o.String() }

// Format makes every fmt verb use String, so no verb prints the password.
func (o Options) Format(f fmt.State, _ rune) { _, _ = fmt.Fprint(f, o.String()) }

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
