package cluster

import (
	"fmt"
	"slices"
	"strings"

	"github.com/rcluster/rcluster/internal/provider"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/statedir"
)

// wantState is the saved state the spec describes (never a secret).
func (c *Cluster) wantState() statedir.State {
	s := c.Spec
	st := statedir.State{Name: s.Name, Runtime: s.RuntimeName(), Nodes: s.Addrs(), Replicas: s.Replicas, Security: s.SecurityMode()}
	if len(s.Ports) > 0 { // nodes on one host (external specs list nodes instead)
		st.Host, st.Ports = s.Host, slices.Clone(s.Ports)
	}
	return st
}

// readState returns the state dir's saved state (nil: none).
func (c *Cluster) readState() (*statedir.State, error) {
	st, err := statedir.Read(c.Spec.Dir)
	if err != nil || st == nil {
		return st, err
	}
	if len(st.Nodes) == 0 {
		for _, p := range st.Ports {
			st.Nodes = append(st.Nodes, spec.Node{Host: st.Host, Port: p}.Addr())
		}
	}
	return st, nil
}

// claim records in saved (nil: a new state) every path of the spec's layout
// that does not exist yet, before up creates any, and saves it: purge then
// removes exactly what rcluster made. dirMade and lockMade say whether this
// run created the state dir and its lock file (lock does both).
func (c *Cluster) claim(saved *statedir.State, dirMade, lockMade bool) (*statedir.State, error) {
	st := saved
	if st == nil {
		w := c.wantState()
		st = &w
		st.Version = statedir.Version
	}
	var made []string
	if dirMade {
		made = append(made, ".")
	}
	if lockMade {
		made = append(made, statedir.LockFile)
	}
	if !statedir.Exists(statedir.Path(c.Spec.Dir)) {
		made = append(made, statedir.StateFile)
	}
	if statedir.Claim(c.Spec.Dir, st, provider.Layout(c.Spec), made...) || saved == nil {
		if err := statedir.Write(c.Spec.Dir, st); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// saveFormed records that up completed: the spec's topology, runtime and
// security mode, keeping what claim recorded.
func (c *Cluster) saveFormed(st *statedir.State) error {
	w := c.wantState()
	w.Formed, w.Created, w.Trees, w.Version = true, st.Created, st.Trees, statedir.Version
	if err := statedir.Write(c.Spec.Dir, &w); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	*st = w
	return nil
}

// ConflictError says the spec no longer matches the cluster on disk.
type ConflictError struct {
	Dir   string
	Diffs []string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("the spec does not match the cluster saved in %s: %s; run `rcluster down --purge` to start over (this deletes its data)",
		e.Dir, strings.Join(e.Diffs, "; "))
}

// diffState lists how want differs from a saved, formed cluster.
func diffState(saved, want statedir.State) []string {
	if !saved.Formed {
		return nil
	}
	var d []string
	switch {
	case len(saved.Ports) > 0 && len(want.Ports) > 0: // both on one host: say it in the spec's words
		if saved.Host != want.Host {
			d = append(d, fmt.Sprintf("host was %s, now %s", saved.Host, want.Host))
		}
		if !slices.Equal(saved.Ports, want.Ports) {
			d = append(d, fmt.Sprintf("ports were %v, now %v", saved.Ports, want.Ports))
		}
		if len(d) == 0 && len(saved.Nodes) > 0 && !slices.Equal(saved.Nodes, want.Nodes) {
			// Same host and ports, other addresses (docker network: bridge
			// or its subnet changed).
			d = append(d, fmt.Sprintf("nodes were %s, now %s", strings.Join(saved.Nodes, " "), strings.Join(want.Nodes, " ")))
		}
	case !slices.Equal(saved.Nodes, want.Nodes):
		d = append(d, fmt.Sprintf("nodes were %s, now %s", strings.Join(saved.Nodes, " "), strings.Join(want.Nodes, " ")))
	}
	if saved.Replicas != want.Replicas {
		d = append(d, fmt.Sprintf("replicas was %d, now %d", saved.Replicas, want.Replicas))
	}
	if saved.Security != "" && saved.Security != want.Security {
		d = append(d, fmt.Sprintf("security was %s, now %s", saved.Security, want.Security))
	}
	return d
}
