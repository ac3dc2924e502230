package procmgr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// Kill, Pause and Resume inject faults into one node (failover tests: a
// crashed node, a hung one). Each acts only on a process Identify proves to
// be n, never on a stale or unprovable pidfile, and returns once its effect
// is visible, or with ctx's error. Errors name the node:
// "node 127.0.0.1:7001: pause: ...".

// Errors Kill, Pause and Resume wrap when they leave n alone.
var (
	// ErrNotRunning: n has no live process (no pidfile, or a stale one).
	ErrNotRunning = errors.New("not running")
	// ErrUnproven: n's pidfile names a live process whose identity the OS
	// will not show (State.Unproven).
	ErrUnproven = errors.New("refused")
)

// Kill sends SIGKILL to n's process, as a crash would end it: no SHUTDOWN,
// so writes not yet fsynced to the AOF may be lost. It returns when the
// process is gone and n's port refuses connections. The pidfile stays,
// naming a dead pid, as after a crash; Start replaces it.
func Kill(ctx context.Context, n Node, o Options) error {
	if err := kill(ctx, n, o); err != nil {
		return fmt.Errorf("node %s: kill: %w", n.Addr(), err)
	}
	return nil
}

func kill(ctx context.Context, n Node, o Options) error {
	p, err := proven(ctx, n, o)
	if err != nil {
		return err
	}
	defer p.release()
	if err := p.signal(ctx, syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("pid %d: %w", p.pid, err)
	}
	if err := waitGone(ctx, p); err != nil {
		return fmt.Errorf("pid %d still running: %w", p.pid, err)
	}
	if why := waitPortClosed(ctx, n, portWait); why != "" {
		return fmt.Errorf("pid %d exited but %s %s", p.pid, n.Addr(), why)
	}
	return nil
}

// Pause sends SIGSTOP to n's process and returns when the OS shows it
// stopped. A paused node accepts connections (the kernel queues them) but
// answers nothing, and its peers mark it failed after cluster-node-timeout,
// as with a hung host; Identify still reports it Running, not Responding.
// Pausing a paused node changes nothing.
func Pause(ctx context.Context, n Node, o Options) error {
	if err := pause(ctx, n, o); err != nil {
		return fmt.Errorf("node %s: pause: %w", n.Addr(), err)
	}
	return nil
}

func pause(ctx context.Context, n Node, o Options) error {
	p, err := proven(ctx, n, o)
	if err != nil {
		return err
	}
	defer p.release()
	if err := p.signal(ctx, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("pid %d: %w", p.pid, err)
	}
	for b := newBackoff(); !p.stopped(ctx); {
		if p.gone(ctx) {
			return fmt.Errorf("pid %d exited", p.pid)
		}
		if err := b.Wait(ctx); err != nil {
			return fmt.Errorf("pid %d not stopped: %w", p.pid, err)
		}
	}
	return nil
}

// Resume sends SIGCONT to n's process and returns when it runs again and
// answers PING (a node paused for long may first have to catch up with its
// clients and its cluster bus). Resuming a running node only waits for its
// PING.
func Resume(ctx context.Context, n Node, o Options) error {
	if err := resume(ctx, n, o); err != nil {
		return fmt.Errorf("node %s: resume: %w", n.Addr(), err)
	}
	return nil
}

func resume(ctx context.Context, n Node, o Options) error {
	p, err := proven(ctx, n, o)
	if err != nil {
		return err
	}
	defer p.release()
	if err := p.signal(ctx, syscall.SIGCONT); err != nil {
		return fmt.Errorf("pid %d: %w", p.pid, err)
	}
	for b := newBackoff(); ; {
		if p.gone(ctx) {
			return fmt.Errorf("pid %d exited", p.pid)
		}
		var last error = errors.New("still stopped")
		if !p.stopped(ctx) {
			last = withNode(ctx, n, o, func(c *redis.Client) error { return c.Ping(ctx).Err() })
			if last == nil {
				return nil
			}
		}
		if err := b.Wait(ctx); err != nil {
			return fmt.Errorf("pid %d not answering PING (%v): %w", p.pid, last, err)
		}
	}
}

// proven returns the proof that n's pidfile names n's live process, or an
// error wrapping ErrNotRunning or ErrUnproven with Identify's detail.
func proven(ctx context.Context, n Node, o Options) (*proof, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // a caller that gave up gets nothing done
	}
	st, p := identify(ctx, n, o)
	switch {
	case st.Unproven:
		return nil, fmt.Errorf("%w: %s", ErrUnproven, st.Detail)
	case !st.Running:
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, st.Detail)
	}
	return p, nil
}
