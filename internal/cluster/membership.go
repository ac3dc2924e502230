package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/rcluster/rcluster/internal/provider"
	"github.com/rcluster/rcluster/internal/topology"
)

// nodeView is what one spec node says about its cluster: live from CLUSTER
// NODES when it runs and answers, else from its nodes.conf on disk.
type nodeView struct {
	Addr   string          // the spec's address for the node
	Source string          // "CLUSTER NODES" or the nodes.conf path
	Nodes  []topology.Node // nil: no cluster state at all (never started)
}

// me returns the node's own entry.
func (v nodeView) me() (topology.Node, bool) { return topology.Myself(v.Nodes) }

// formed reports whether the node belongs to a cluster: it knows another
// node or owns slots. A node with no state, or one that only knows itself
// and owns nothing, is fresh.
func (v nodeView) formed() bool {
	me, ok := v.me()
	if !ok {
		return false
	}
	return len(v.Nodes) > 1 || len(me.Slots) > 0
}

// readNodesConf parses a Redis nodes.conf (CLUSTER NODES lines plus a
// trailing "vars ..." line). A missing file is (nil, nil).
func readNodesConf(path string) ([]topology.Node, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 0 || f[0] == "vars" {
			continue
		}
		lines = append(lines, l)
	}
	nodes, err := topology.ParseNodes(strings.Join(lines, "\n"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(nodes) > 0 {
		if _, ok := topology.Myself(nodes); !ok {
			return nil, fmt.Errorf("%s: no line flagged myself", path)
		}
	}
	return nodes, nil
}

// views gathers every node's view without changing anything: live for
// nodes that answer (responding[i], in spec order), from nodes.conf for the
// others. It returns none when the nodes' cluster state is not rcluster's
// to read (external nodes).
func (c *Cluster) views(ctx context.Context, prov provider.Provider, responding []bool) ([]nodeView, error) {
	s := c.Spec
	nodes := s.Nodes()
	for _, n := range nodes {
		if prov.NodesFile(n) == "" {
			return nil, nil
		}
	}
	out := make([]nodeView, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		out[i].Addr = n.Addr()
		if responding[i] {
			wg.Go(func() {
				cl := c.Conn.Node(n.Addr())
				defer cl.Close()
				txt, err := cl.ClusterNodes(ctx).Result()
				if err == nil {
					out[i].Nodes, err = topology.ParseNodes(txt)
				}
				if err != nil {
					errs[i] = fmt.Errorf("node %s: cluster nodes: %w", n.Addr(), err)
				}
				out[i].Source = "CLUSTER NODES"
			})
			continue
		}
		path := prov.NodesFile(n)
		out[i].Source = path
		ns, err := readNodesConf(path)
		if err != nil {
			errs[i] = fmt.Errorf("node %s: %w", n.Addr(), err)
		}
		out[i].Nodes = ns
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// membership reads every node's view (see views) and refuses, with a
// *MembershipError, nodes that do not belong with the others (see
// checkMembership); it returns the views for the caller's next decisions.
func (c *Cluster) membership(ctx context.Context, prov provider.Provider, responding []bool) ([]nodeView, error) {
	views, err := c.views(ctx, prov, responding)
	if err != nil {
		return nil, err
	}
	if err := checkMembership(views); err != nil {
		return nil, err
	}
	return views, nil
}

// MembershipError says some nodes' saved or live cluster state does not
// fit together with the others': rcluster refuses to start or change them.
type MembershipError struct {
	// Nodes are the addresses at fault.
	Nodes    []string
	Problems []string
}

func (e *MembershipError) Error() string {
	return fmt.Sprintf("refusing to bring up this cluster, nothing was started or changed: %s; "+
		"if these nodes' data is disposable, `rcluster down --purge` starts over",
		strings.Join(e.Problems, "; "))
}

// checkMembership finds nodes that do not belong with the others: two
// nodes with one id (a copied nodes.conf), a mix of nodes with and without
// cluster state (a lost nodes.conf, or an interrupted first up), a node
// that knows nodes outside the spec (it belongs to another cluster), and a
// node whose id is not the one the others know at its address (its
// nodes.conf was replaced). It returns nil or a *MembershipError.
func checkMembership(views []nodeView) error {
	e := &MembershipError{}
	blame := map[string]bool{}
	add := func(addr, format string, a ...any) {
		e.Problems = append(e.Problems, fmt.Sprintf(format, a...))
		if !blame[addr] {
			blame[addr] = true
			e.Nodes = append(e.Nodes, addr)
		}
	}

	ours := map[string]string{} // node id -> spec address
	specAddr := map[string]bool{}
	for _, v := range views {
		specAddr[v.Addr] = true
	}
	var fresh, formed []string
	for _, v := range views {
		if v.formed() {
			formed = append(formed, v.Addr)
		} else {
			fresh = append(fresh, v.Addr)
		}
		me, ok := v.me()
		if !ok {
			continue
		}
		if other, dup := ours[me.ID]; dup {
			add(v.Addr, "%s and %s have the same node id %s (a copied nodes.conf?)", other, v.Addr, short(me.ID))
			continue
		}
		ours[me.ID] = v.Addr
	}
	if len(fresh) > 0 && len(formed) > 0 {
		for _, a := range fresh {
			blame[a] = true
			e.Nodes = append(e.Nodes, a)
		}
		e.Problems = append(e.Problems, fmt.Sprintf(
			"%s %s no cluster state while %s %s (a lost or deleted nodes.conf, or a first `up` that was interrupted)",
			strings.Join(fresh, ", "), hasHave(len(fresh)), strings.Join(formed, ", "), doDoes(len(formed))))
	}

	// Ids the others know at a spec address that is not that node's id.
	wrongID := map[string]map[string][]string{} // addr -> known id -> who knows it
	for _, v := range views {
		if !v.formed() {
			continue
		}
		var outside []string
		for _, n := range v.Nodes {
			if n.IsMyself() || n.HasFlag("handshake") || n.HasFlag("noaddr") || n.Addr == "" || strings.HasPrefix(n.Addr, ":") {
				continue
			}
			if _, ok := ours[n.ID]; ok {
				continue
			}
			if specAddr[n.Addr] {
				if wrongID[n.Addr] == nil {
					wrongID[n.Addr] = map[string][]string{}
				}
				wrongID[n.Addr][n.ID] = append(wrongID[n.Addr][n.ID], v.Addr)
				continue
			}
			outside = append(outside, n.Addr)
		}
		if len(outside) > 0 {
			sort.Strings(outside)
			add(v.Addr, "%s belongs to another cluster: it knows %s, which %s not in the spec (%s)",
				v.Addr, strings.Join(outside, ", "), isAre(len(outside)), v.Source)
		}
	}
	addrs := make([]string, 0, len(wrongID))
	for a := range wrongID {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		self := "no id"
		for id, at := range ours {
			if at == a {
				self = "id " + short(id)
			}
		}
		ids := make([]string, 0, len(wrongID[a]))
		for id := range wrongID[a] {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			add(a, "%s has %s, but %s know%s node %s at that address (its nodes.conf was replaced, or it belongs to another cluster)",
				a, self, strings.Join(wrongID[a][id], ", "), sIf(len(wrongID[a][id]) == 1), short(id))
		}
	}
	if len(e.Problems) == 0 {
		return nil
	}
	return e
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func hasHave(n int) string {
	if n == 1 {
		return "has"
	}
	return "have"
}

func doDoes(n int) string {
	if n == 1 {
		return "does"
	}
	return "do"
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

func sIf(b bool) string {
	if b {
		return "s"
	}
	return ""
}
