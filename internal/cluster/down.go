package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rcluster/rcluster/internal/events"
	"github.com/rcluster/rcluster/internal/provider"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/statedir"
)

// DownOptions tune Down.
type DownOptions struct {
	// Purge also deletes what rcluster created in the state dir (the
	// data); files it did not create stay.
	Purge bool
	// Timeout bounds the whole of down (default 2 minutes).
	Timeout time.Duration
}

// Down stops every node gracefully (SHUTDOWN, so the AOF is flushed) on any
// runtime, signalling only what is proven to be that node; nodes already
// down are reported, not errors. It also stops nodes the saved state lists
// but the spec no longer does. With o.Purge it then deletes what rcluster
// created in the state dir, and nothing else; a dir that cannot be purged
// (/, the home directory, the spec file's own directory) is refused before
// anything is stopped.
func (c *Cluster) Down(ctx context.Context, o DownOptions) error {
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	st, s := c.status(), c.Spec
	if o.Purge {
		if err := c.checkPurge(); err != nil {
			return err
		}
	}
	var saved *statedir.State
	if c.hasState() {
		unlock, err := lock(ctx, s.Dir, c.lockWait())
		if err != nil {
			return err
		}
		defer unlock()
		if saved, err = c.readState(); err != nil {
			return err
		}
	}
	prov, err := c.provider(ctx)
	if err != nil {
		return err
	}
	defer prov.Close()

	st.Start("Stopping the cluster's nodes")
	results, err := prov.StopAll(ctx, c.dropped(saved))
	st.End(err == nil)
	for _, r := range results {
		fmt.Fprintln(c.log(), r.Line())
	}
	if err != nil {
		return fmt.Errorf("down: %w", err)
	}
	summary := prov.Summary(results)
	if saved != nil {
		c.record(events.Event{Kind: events.KindDown, Message: "down: " + summary})
	}
	switch {
	case saved == nil && !c.hasState() && !anyStopped(results):
		st.Infof("Cluster %q has no state in %s; nothing to stop.", s.Name, s.Dir)
		return nil
	case saved == nil && !c.hasState():
		st.Infof("Cluster %q: %s; it has no state in %s.", s.Name, summary, s.Dir)
		return nil
	case !o.Purge:
		st.Infof("Cluster %q stopped (%s); data kept in %s (`rcluster up` brings it back, `down --purge` deletes it).", s.Name, summary, s.Dir)
		return nil
	}
	return c.purge(saved, summary)
}

// anyStopped reports whether StopAll stopped anything.
func anyStopped(res []provider.StopResult) bool {
	for _, r := range res {
		if r.Err == nil && r.Action != "not running" {
			return true
		}
	}
	return false
}

// dropped lists the nodes the saved state has but the spec no longer does
// (a port removed from the spec): down stops them too.
func (c *Cluster) dropped(saved *statedir.State) []spec.Node {
	if saved == nil {
		return nil
	}
	var out []spec.Node
	for _, p := range saved.Ports {
		if !slices.Contains(c.Spec.Ports, p) {
			out = append(out, spec.Node{Host: saved.Host, Port: p})
		}
	}
	return out
}

// hasState reports whether the state dir holds an rcluster cluster: a
// state file, or (an up of an older rcluster that never completed) configs.
func (c *Cluster) hasState() bool {
	return statedir.Exists(statedir.Path(c.Spec.Dir)) || statedir.Exists(c.Spec.ConfDir())
}

// checkPurge refuses, before anything is stopped, a state dir that cannot
// be purged: the filesystem root, the home directory, the spec file's own
// directory.
func (c *Cluster) checkPurge() error {
	specDir := ""
	if c.Spec.Path != "" {
		abs, err := filepath.Abs(c.Spec.Path)
		if err != nil {
			return fmt.Errorf("spec file %s: %w", c.Spec.Path, err)
		}
		specDir = filepath.Dir(abs)
	}
	return statedir.CheckPurgeTarget(c.Spec.Dir, specDir)
}

// purge removes what rcluster created in the state dir (statedir.Purge)
// and says what it kept.
func (c *Cluster) purge(saved *statedir.State, summary string) error {
	st, s := c.status(), c.Spec
	st.Start("Removing what rcluster created in " + s.Dir)
	res, err := statedir.Purge(s.Dir, saved, provider.Layout(s))
	st.End(err == nil)
	if err != nil {
		return err
	}
	if len(res.Kept) > 0 {
		st.Infof("Cluster %q stopped (%s) and its state deleted; kept %s, which rcluster did not create: %s.",
			s.Name, summary, s.Dir, strings.Join(res.Kept, ", "))
		return nil
	}
	st.Infof("Cluster %q stopped (%s) and its state deleted.", s.Name, summary)
	return nil
}
