package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rcluster/rcluster/internal/redisconn"
)

// infoFields parses "key:value" lines of INFO / CLUSTER INFO output.
func infoFields(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// notUsable says why a node with this CLUSTER INFO and INFO replication is
// not usable in a cluster of n nodes, or "" when it is: cluster_state:ok,
// it knows all n nodes, and if it is a replica its master link is up.
func notUsable(clusterInfo, replInfo string, n int) string {
	ci := infoFields(clusterInfo)
	if st := ci["cluster_state"]; st != "ok" {
		return "cluster_state:" + st
	}
	if k := ci["cluster_known_nodes"]; k != strconv.Itoa(n) {
		return fmt.Sprintf("knows %s of %d nodes", k, n)
	}
	ri := infoFields(replInfo)
	if ri["role"] == "slave" {
		if ls := ri["master_link_status"]; ls != "up" {
			return "master_link_status:" + ls
		}
	}
	return ""
}

// prober checks a set of nodes for usability, keeping one connection per
// node across sweeps so polling costs one round trip per node.
type prober struct {
	addrs   []string
	clients []*redis.Client
	next    int // node to start the next sweep at: the last one not ready
}

func newProber(addrs []string) *prober {
	p := &prober{addrs: addrs, clients: make([]*redis.Client, len(addrs))}
	o := redisconn.Options{Timeout: time.Second}
	for i, a := range addrs {
		p.clients[i] = o.Node(a)
	}
	return p
}

func (p *prober) Close() {
	for _, c := range p.clients {
		c.Close()
	}
}

func (p *prober) check(ctx context.Context, i int) string {
	pipe := p.clients[i].Pipeline()
	ci := pipe.ClusterInfo(ctx)
	ri := pipe.Info(ctx, "replication")
	if _, err := pipe.Exec(ctx); err != nil {
		return err.Error()
	}
	return notUsable(ci.Val(), ri.Val(), len(p.addrs))
}

// sweep checks every node, starting at the one that failed last time and
// stopping at the first that is not usable. It returns "" when all are
// usable, else "<addr>: <reason>".
func (p *prober) sweep(ctx context.Context) string {
	n := len(p.addrs)
	for k := 0; k < n; k++ {
		i := (p.next + k) % n
		if why := p.check(ctx, i); why != "" {
			p.next = i
			return p.addrs[i] + ": " + why
		}
	}
	return ""
}

// waitUsable polls with short backoff until a sweep finds every node usable
// and returns the time that sweep ended and how long the sweep took.
func (p *prober) waitUsable(ctx context.Context) (time.Time, time.Duration, error) {
	var last string
	var end time.Time
	var took time.Duration
	err := poll(ctx, 2*time.Millisecond, 50*time.Millisecond, func() (bool, error) {
		start := time.Now()
		last = p.sweep(ctx)
		end = time.Now()
		took = end.Sub(start)
		return last == "", nil
	})
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("not usable: %w (last: %s)", err, last)
	}
	return end, took, nil
}

// waitPing polls every node with PING until all answer.
func (p *prober) waitPing(ctx context.Context) error {
	for i, c := range p.clients {
		var last error
		err := poll(ctx, time.Millisecond, 20*time.Millisecond, func() (bool, error) {
			last = c.Ping(ctx).Err()
			return last == nil, nil
		})
		if err != nil {
			return fmt.Errorf("node %s never answered PING: %w (last: %v)", p.addrs[i], err, last)
		}
	}
	return nil
}

func addrsFor(base, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "127.0.0.1:" + strconv.Itoa(base+i)
	}
	return out
}
