package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rcluster/rcluster/internal/procmgr"
	"github.com/rcluster/rcluster/internal/slots"
)

// The pre-written nodes.conf fast path (see slots.NodesConfs), opt-in with
// UpOptions.Prewrite: when up starts a brand-new local cluster on a Redis version whose file format is
// known, every node starts already knowing the whole cluster, so up skips
// MEET, gossip and settle and only waits for Redis's ~2s start-up delay.
// If the nodes do not come up as written, up stops them, removes the files
// and forms the cluster with MEET as before.

// describedVersionRE reads CheckBinary's "... (Redis 7.0.15)".
var describedVersionRE = regexp.MustCompile(`\(Redis (\d+)\.(\d+)\.\d+\)$`)

// prewriteMangle, when set (tests only), rewrites each file before it is
// written, to exercise the fallback.
var prewriteMangle func([]byte) []byte

// prewriteWhyNot returns "" when the fast path may be used for this spec,
// binary version and set of nodes to start, else why not (for -v output).
func (c *Cluster) prewriteWhyNot(o UpOptions, version string, missing []procmgr.Node) string {
	s := c.Spec
	switch {
	case !o.Prewrite:
		return "not asked for"
	case len(missing) != len(s.Ports):
		return "some nodes already run"
	case s.Template != "":
		return "custom template"
	case s.TLS != nil:
		return "TLS (the bus port and announced port differ)"
	}
	if m := describedVersionRE.FindStringSubmatch(version); m == nil {
		return "unknown Redis version"
	} else {
		major, _ := strconv.Atoi(m[1])
		minor, _ := strconv.Atoi(m[2])
		if !slots.PrewriteVersionOK(major, minor) {
			return fmt.Sprintf("Redis %s.%s (file format checked on 7.0 only)", m[1], m[2])
		}
	}
	for _, d := range s.Config {
		k := strings.ToLower(d.Key)
		if k == "port" || k == "bind" || k == "cluster-port" || k == "cluster-config-file" ||
			strings.HasPrefix(k, "cluster-announce") || strings.HasPrefix(k, "tls-") {
			return "config sets " + d.Key
		}
	}
	for _, p := range s.Ports {
		if _, err := os.Stat(s.NodesFile(p)); !errors.Is(err, os.ErrNotExist) {
			return fmt.Sprintf("node %d has a nodes.conf", p)
		}
		if ents, err := os.ReadDir(s.DataDir(p)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Sprintf("node %d: %v", p, err)
		} else if len(ents) > 0 {
			return fmt.Sprintf("node %d has files in %s", p, s.DataDir(p))
		}
	}
	return ""
}

// writeNodesConfs writes every node's pre-formed nodes.conf (0600). On
// error it removes what it wrote.
func (c *Cluster) writeNodesConfs(ctx context.Context) error {
	plan, err := slots.NewPlan(c.Spec.Nodes(), c.Spec.Replicas)
	if err != nil {
		return err
	}
	confs, err := slots.NodesConfs(ctx, plan)
	if err != nil {
		return err
	}
	writePlan(c.log(), plan)
	for _, nc := range confs {
		data := nc.Data
		if prewriteMangle != nil {
			data = prewriteMangle(data)
		}
		if err := os.WriteFile(c.Spec.NodesFile(nc.Node.Port), data, 0o600); err != nil {
			c.removeNodesConfs()
			return fmt.Errorf("node %d: write nodes.conf: %w", nc.Node.Port, err)
		}
	}
	return nil
}

// removeNodesConfs deletes every node's nodes.conf (fallback to MEET).
func (c *Cluster) removeNodesConfs() error {
	var errs []error
	for _, p := range c.Spec.Ports {
		if err := os.Remove(c.Spec.NodesFile(p)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("node %d: remove nodes.conf: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// prewriteWait bounds the wait for a pre-written cluster before up falls
// back to MEET: Redis needs ~2s, 100 nodes measured ~1s more on 2 cores.
func prewriteWait(n int) time.Duration { return 8*time.Second + time.Duration(n)*40*time.Millisecond }
