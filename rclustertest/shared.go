package rclustertest

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// Shared is one cluster for a whole test binary: start it once in
// TestMain, and let each test take it in a reset state, far cheaper than a
// cluster per test (Reset takes milliseconds; a new cluster ~2 s):
//
//	var shared *rclustertest.Shared
//
//	func TestMain(m *testing.M) {
//		var err error
//		if shared, err = rclustertest.NewShared(rclustertest.WithReplicas(1)); err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//		code := m.Run()
//		shared.Close()
//		os.Exit(code)
//	}
//
//	func TestFailover(t *testing.T) {
//		c := shared.Take(t) // reset: every node up, planned roles, no keys
//		c.FailoverKey("cart:1")
//	}
//
// Tests that take it run one at a time (Take waits for the previous
// test's cleanup), so a test may kill, pause or fail over freely.
type Shared struct {
	mu  sync.Mutex
	c   *Cluster
	env *mainTB
}

// NewShared starts a cluster outside any test (in TestMain). Without
// redis-server it returns an error wrapping ErrNoRedisServer.
func NewShared(opts ...Option) (s *Shared, err error) {
	env := &mainTB{}
	defer func() {
		if r := recover(); r != nil {
			if r != errFatal {
				panic(r)
			}
			env.runCleanups()
			os.RemoveAll(env.dir)
			s, err = nil, env.err
		}
	}()
	c := Start(env, opts...)
	return &Shared{c: c, env: env}, nil
}

// ErrNoRedisServer: NewShared found no redis-server binary.
var ErrNoRedisServer = errors.New("rclustertest: redis-server not found")

// Take returns the shared cluster for t in a reset state (Reset) and holds
// it for t until t ends.
func (s *Shared) Take(t testing.TB) *Cluster {
	t.Helper()
	s.mu.Lock()
	t.Cleanup(s.mu.Unlock)
	c := *s.c
	c.t, c.shared = t, true
	c.Reset()
	return &c
}

// Close stops the shared cluster and deletes its files.
func (s *Shared) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.env.runCleanups()
	if err := os.RemoveAll(s.env.dir); err != nil {
		return err
	}
	return s.env.err
}

// mainTB is the testing.TB Start needs, outside a test: its own temp dir,
// cleanups run by Close, and Fatalf that unwinds to NewShared.
type mainTB struct {
	testing.TB // nil: only the methods below are called
	dir        string
	cleanups   []func()
	err        error
}

var errFatal = errors.New("rclustertest: fatal")

func (m *mainTB) Helper() {}

func (m *mainTB) Fatalf(format string, a ...any) {
	m.err = fmt.Errorf(format, a...)
	panic(errFatal)
}

func (m *mainTB) Skipf(format string, a ...any) {
	m.err = fmt.Errorf("%w: %s", ErrNoRedisServer, fmt.Sprintf(format, a...))
	panic(errFatal)
}

func (m *mainTB) Errorf(format string, a ...any) {
	m.err = errors.Join(m.err, fmt.Errorf(format, a...))
}

func (m *mainTB) Logf(string, ...any) {}

func (m *mainTB) Cleanup(f func()) { m.cleanups = append(m.cleanups, f) }

func (m *mainTB) TempDir() string {
	if m.dir == "" {
		d, err := os.MkdirTemp("", "rclustertest-shared-")
		if err != nil {
			m.Fatalf("rclustertest: temp dir: %v", err)
		}
		m.dir = d
	}
	return m.dir
}

func (m *mainTB) runCleanups() {
	for i := len(m.cleanups) - 1; i >= 0; i-- {
		m.cleanups[i]()
	}
	m.cleanups = nil
}
