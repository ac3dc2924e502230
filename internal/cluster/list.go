package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/statedir"
)

// Listed is one state dir under a root, as `rcluster ls` reports it.
type Listed struct {
	Name    string `json:"name"`
	Dir     string `json:"dir"`
	Runtime string `json:"runtime"`
	Host    string `json:"host"`
	Ports   []int  `json:"ports"`
	// State is "running" (every node), "stopped" (none), "partial" or
	// "unknown" (the runtime could not be asked).
	State   string `json:"state"`
	Running int    `json:"running"`
	Nodes   int    `json:"nodes"`
	// Formed is true once `up` completed.
	Formed   bool   `json:"formed"`
	Replicas int    `json:"replicas"`
	Detail   string `json:"detail,omitempty"`
}

// List reads every cluster state dir under root and asks each cluster's
// runtime about its nodes, through the same code as status (in parallel;
// each call to a node bounded by timeout).
func List(ctx context.Context, root string, timeout time.Duration) ([]Listed, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ls %s: %w", root, err)
	}
	var out []Listed
	var specs []*spec.Spec
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		s, lc, ok, err := readClusterDir(filepath.Join(root, e.Name()))
		if !ok {
			continue
		}
		if err != nil {
			lc.State, lc.Detail = "unknown", err.Error()
		}
		out = append(out, lc)
		specs = append(specs, s)
	}
	var wg sync.WaitGroup
	for i := range out {
		if out[i].State != "" {
			continue
		}
		wg.Go(func() {
			c := &Cluster{Spec: specs[i], Conn: redisconn.Options{Timeout: timeout}}
			sts, err := c.nodeStatuses(ctx)
			describeListed(&out[i], sts, err)
		})
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func describeListed(lc *Listed, sts []NodeStatus, err error) {
	lc.Nodes = len(sts)
	if err != nil {
		lc.State, lc.Detail = "unknown", err.Error()
		return
	}
	var down []string
	for _, st := range sts {
		if st.Running {
			lc.Running++
		} else {
			down = append(down, strconv.Itoa(st.Port))
		}
	}
	switch {
	case lc.Running == lc.Nodes:
		lc.State = "running"
	case lc.Running == 0:
		lc.State = "stopped"
	default:
		lc.State = "partial"
		lc.Detail = "not running: " + strings.Join(down, ", ")
	}
	if !lc.Formed && lc.Detail == "" {
		lc.Detail = "never formed (up did not complete)"
	}
}

var confNameRE = regexp.MustCompile(`^redis_(\d+)\.conf$`)

// readClusterDir describes dir, and the spec status needs to read its
// nodes, from its state file, or, when an older rcluster's up never
// completed there, from its conf/redis_<port>.conf files. ok is false when
// dir is not an rcluster state dir.
func readClusterDir(dir string) (s *spec.Spec, lc Listed, ok bool, err error) {
	lc = Listed{Name: filepath.Base(dir), Dir: dir, Host: spec.DefaultHost, Runtime: spec.RuntimeProcess}
	s = &spec.Spec{Name: lc.Name, Dir: dir, Host: lc.Host, RedisServer: spec.DefaultRedisServer}
	st, err := statedir.Read(dir)
	switch {
	case err != nil:
		return s, lc, true, err
	case st != nil:
		if st.Name != "" {
			lc.Name = st.Name
		}
		if st.Host != "" {
			lc.Host = st.Host
		}
		lc.Runtime, lc.Ports, lc.Replicas, lc.Formed = st.Runtime, st.Ports, st.Replicas, st.Formed
		s.Name, s.Host, s.Runtime, s.Ports, s.Replicas = lc.Name, lc.Host, st.Runtime, st.Ports, st.Replicas
		for _, a := range st.Nodes {
			if n, perr := spec.ParseNode(a); perr == nil {
				s.ExternalNodes = append(s.ExternalNodes, n)
			}
		}
		return s, lc, true, nil
	}
	entries, err := os.ReadDir(filepath.Join(dir, "conf"))
	if errors.Is(err, fs.ErrNotExist) {
		return s, lc, false, nil
	}
	if err != nil {
		return s, lc, true, err
	}
	for _, e := range entries {
		m := confNameRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		port, _ := strconv.Atoi(m[1])
		lc.Ports = append(lc.Ports, port)
		if h := confBind(filepath.Join(dir, "conf", e.Name())); h != "" {
			lc.Host = h
		}
	}
	sort.Ints(lc.Ports)
	s.Host, s.Ports = lc.Host, lc.Ports
	return s, lc, len(lc.Ports) > 0, nil
}

// confBind returns the first address of a redis.conf's bind line.
func confBind(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.EqualFold(f[0], "bind") {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}
