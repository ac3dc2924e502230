package confgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/redisconn"
	"github.com/rcluster/rcluster/internal/spec"
	"github.com/rcluster/rcluster/internal/testutil/redistest"
	"github.com/rcluster/rcluster/internal/tlsgen"
)

// daemon is a redis-server started from a rendered config as rcluster
// starts it: `redis-server <conf>` with the config's daemonize yes, in an
// environment without the spec's secret variables.
type daemon struct {
	port int
	addr string
	pid  int
}

// startDaemons writes s's configs and starts every node, each killed at
// cleanup; it returns when all answer PING through s.ConnOptions().
func startDaemons(t *testing.T, s *spec.Spec) []*daemon {
	t.Helper()
	if _, err := Write(s); err != nil {
		t.Fatal(err)
	}
	o, err := s.ConnOptions()
	if err != nil {
		t.Fatal(err)
	}
	o.Timeout = time.Second
	var out []*daemon
	for _, n := range s.Nodes() {
		d := &daemon{port: n.Port, addr: n.Addr()}
		t.Cleanup(func() { killDaemon(t, s, d.port) })
		cmd := exec.Command(s.RedisServer, s.ConfFile(n.Port))
		cmd.Env = s.ChildEnv(os.Environ())
		if b, err := cmd.CombinedOutput(); err != nil { // the parent exits once it has forked
			t.Fatalf("start node %d: %v\n%s", n.Port, err, b)
		}
		out = append(out, d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, d := range out {
		if err := poll(ctx, func() error {
			pid, err := readPid(s.PidFile(d.port))
			if err != nil {
				return err
			}
			d.pid = pid
			c := o.Node(d.addr)
			defer c.Close()
			return c.Ping(ctx).Err()
		}); err != nil {
			log, _ := os.ReadFile(s.LogFile(d.port))
			t.Fatalf("node %d not ready: %v\nlog:\n%s", d.port, err, log)
		}
	}
	return out
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// poll calls f with a short backoff until it succeeds or ctx ends.
func poll(ctx context.Context, f func() error) error {
	delay := 5 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// killDaemon SIGKILLs the node on port if it is still running: the pid in
// its pidfile, only while that process is redis-server serving that port.
func killDaemon(t *testing.T, s *spec.Spec, port int) {
	pid, err := readPid(s.PidFile(port))
	if err != nil || !isNode(pid, port) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if err := waitGone(pid, 5*time.Second); err != nil {
		t.Errorf("cleanup: node %d: %v", port, err)
	}
}

func isNode(pid, port int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && bytes.Contains(b, []byte("redis-server")) && bytes.Contains(b, []byte(":"+strconv.Itoa(port)))
}

// waitGone waits until pid has exited. A daemonized node is reparented to
// init, which may take seconds to reap it: a zombie counts as gone.
func waitGone(pid int, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return poll(ctx, func() error {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			// pid (comm) state ...: comm may hold spaces, so look after the last ')'.
			if i := bytes.LastIndexByte(stat, ')'); i >= 0 && bytes.HasPrefix(stat[i+1:], []byte(" Z")) {
				return nil
			}
		}
		return fmt.Errorf("pid %d still running", pid)
	})
}

// shutdown stops every node with SHUTDOWN NOSAVE through o and waits for
// the processes to exit.
func shutdown(t *testing.T, o redisconn.Options, ds []*daemon) {
	t.Helper()
	for _, d := range ds {
		c := o.Node(d.addr)
		_ = c.ShutdownNoSave(context.Background()).Err() // the connection drops as it exits
		c.Close()
		if err := waitGone(d.pid, 10*time.Second); err != nil {
			t.Errorf("node %d after SHUTDOWN NOSAVE: %v", d.port, err)
		}
	}
}

// procSeesNoSecret checks what other local users can see of the running
// node (its command line via /proc and ps) and the node's log for secrets,
// and that the process title still names the node's port (procmgr's proof
// of identity relies on it).
func procSeesNoSecret(t *testing.T, s *spec.Spec, d *daemon, secrets ...string) {
	t.Helper()
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", d.pid))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := exec.Command("ps", "-ww", "-o", "args=", "-p", strconv.Itoa(d.pid)).Output()
	if err != nil {
		t.Fatalf("ps: %v", err)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", d.pid))
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(s.LogFile(d.port))
	if err != nil {
		t.Fatal(err)
	}
	for what, b := range map[string][]byte{"/proc/pid/cmdline": cmdline, "ps": ps, "/proc/pid/environ": environ, "log": log} {
		for _, sec := range secrets {
			if bytes.Contains(b, []byte(sec)) {
				t.Errorf("node %d: %s shows a secret: %q", d.port, what, b)
			}
		}
	}
	if want := s.Host + ":" + strconv.Itoa(d.port); !bytes.Contains(ps, []byte(want)) {
		t.Errorf("node %d: process title %q does not name %s", d.port, ps, want)
	}
}

func TestAuthOnRealRedis(t *testing.T) {
	redistest.Integration(t)
	bin := redistest.RequireBinary(t, "redis-server")
	port := redistest.PortBlock(t, 1)
	dir := t.TempDir()
	const admin, app, reader = `Adm1n "pass" word`, `app\secret`, "r3ad-only"
	if err := os.WriteFile(filepath.Join(dir, "admin.pw"), []byte(admin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RCLUSTER_TEST_APP_PW", app) // rcluster's own environment holds it; the node's must not
	s, err := spec.Parse([]byte(fmt.Sprintf(`name: authtest
ports: [%d, %d, %d]
dir: state
redis_server: %s
auth:
  password_file: admin.pw
  users:
    - name: app
      password_env: RCLUSTER_TEST_APP_PW
      rules: "~app:* +@all -@dangerous"
    - name: reader
      password: %s
      rules: "~* +@read +ping"
config:
  appendonly: false
  save: ""
`, port, port+1, port+2, bin, reader)), filepath.Join(dir, "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s.Ports = s.Ports[:1] // one node is enough here (the spec needs three to validate)
	ds := startDaemons(t, s)
	d := ds[0]
	checkMode(t, s.ConfFile(port), 0o600)
	for _, dd := range []string{s.Dir, s.ConfDir(), s.RunDir(), s.LogDir(), s.DBDir(), s.DataDir(port)} {
		checkMode(t, dd, os.ModeDir|0o700)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o, err := s.ConnOptions()
	if err != nil {
		t.Fatal(err)
	}
	o.Timeout = time.Second
	call := func(o redisconn.Options, args ...any) (any, error) {
		c := o.Node(d.addr)
		defer c.Close()
		return c.Do(ctx, args...).Result()
	}
	expectErr := func(who string, o redisconn.Options, prefix string, args ...any) {
		t.Helper()
		if _, err := call(o, args...); err == nil || !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("%s: %v = %v, want %s...", who, args, err, prefix)
		}
	}
	expectOK := func(who string, o redisconn.Options, args ...any) any {
		t.Helper()
		v, err := call(o, args...)
		if err != nil {
			t.Errorf("%s: %v: %v", who, args, err)
		}
		return v
	}

	// A lone cluster node serves keys once it owns the slots and its
	// cluster state turns ok (about 2 s after start, Redis's writable delay).
	if _, err := call(o, "CLUSTER", "ADDSLOTSRANGE", 0, spec.SlotCount-1); err != nil {
		t.Fatalf("ADDSLOTSRANGE with ConnOptions: %v", err)
	}
	if err := poll(ctx, func() error { _, err := call(o, "SET", "other:1", "x"); return err }); err != nil {
		t.Fatalf("node never served keys: %v", err)
	}
	expectErr("no password", redisconn.Options{Timeout: time.Second}, "NOAUTH", "PING")
	expectErr("wrong password", redisconn.Options{Password: "wrong", Timeout: time.Second}, "WRONGPASS", "PING")
	if v := expectOK("ConnOptions", o, "ACL", "WHOAMI"); v != "default" {
		t.Errorf("ConnOptions authenticates as %v, want default", v)
	}
	if v := expectOK("ConnOptions", o, "CONFIG", "GET", "masterauth"); fmt.Sprint(v) != fmt.Sprint([]any{"masterauth", admin}) {
		t.Error("masterauth is not the admin password")
	}
	expectOK("ConnOptions", o, "FLUSHALL") // the admin keeps every permission next to the ACL users

	appO := redisconn.Options{Username: "app", Password: app, Timeout: time.Second}
	expectOK("app", appO, "SET", "app:1", "v")
	expectErr("app", appO, "NOPERM", "SET", "other:1", "v")
	expectErr("app", appO, "NOPERM", "FLUSHALL")
	readO := redisconn.Options{Username: "reader", Password: reader, Timeout: time.Second}
	if v := expectOK("reader", readO, "GET", "app:1"); v != "v" {
		t.Errorf("reader GET app:1 = %v", v)
	}
	expectErr("reader", readO, "NOPERM", "SET", "app:2", "v")
	expectErr("app with the admin password", redisconn.Options{Username: "app", Password: admin, Timeout: time.Second}, "WRONGPASS", "PING")

	procSeesNoSecret(t, s, d, admin, app, reader)
	shutdown(t, o, ds)
}

func TestGeneratedTLSOnRealRedis(t *testing.T) {
	redistest.Integration(t)
	bin := redistest.RequireBinary(t, "redis-server")
	port := redistest.PortBlock(t, 1)
	s := parse(t, fmt.Sprintf("name: tlstest\nports: [%d, %d, %d]\nredis_server: %s\ndir: state\ntls: {generate: true}\nconfig: {save: \"\", appendonly: false}\n",
		port, port+1, port+2, bin), filepath.Join(t.TempDir(), "cluster.yaml"))
	s.Ports = s.Ports[:1]
	ds := startDaemons(t, s)
	d := ds[0]
	checkMode(t, s.TLSDir(), os.ModeDir|0o700)
	checkMode(t, s.TLSFiles().Key, 0o600)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o, err := s.ConnOptions()
	if err != nil {
		t.Fatal(err)
	}
	o.Timeout = time.Second
	c := o.Node(d.addr)
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING over TLS with ConnOptions: %v", err)
	}
	for key, want := range map[string]string{"port": "0", "tls-port": strconv.Itoa(port), "tls-cluster": "yes", "tls-replication": "yes", "tls-auth-clients": "yes"} {
		if got, err := c.ConfigGet(ctx, key).Result(); err != nil || got[key] != want {
			t.Errorf("CONFIG GET %s = %v (%v), want %s", key, got, err, want)
		}
	}

	fails := func(what string, o redisconn.Options) {
		t.Helper()
		o.Timeout = time.Second
		c := o.Node(d.addr)
		defer c.Close()
		if err := c.Ping(ctx).Err(); err == nil {
			t.Errorf("%s: PING succeeded, want a failure", what)
		}
	}
	fails("plain TCP", redisconn.Options{})
	roots := o.TLSConfig.RootCAs
	fails("TLS without a client certificate", redisconn.Options{TLSConfig: &tls.Config{RootCAs: roots}})
	otherCA, _, _, err := tlsgen.Generate([]string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other := x509.NewCertPool()
	other.AppendCertsFromPEM(otherCA)
	fails("TLS trusting another CA", redisconn.Options{TLSConfig: &tls.Config{RootCAs: other, Certificates: o.TLSConfig.Certificates}})

	procSeesNoSecret(t, s, d)
	shutdown(t, o, ds)
}

// TestTLSClusterOnRealRedis forms a cluster of 3 masters and 1 replica with
// TLS and auth, through go-redis clients only: the cluster bus (tls-cluster)
// and the replication link (tls-replication + masterauth) work.
func TestTLSClusterOnRealRedis(t *testing.T) {
	redistest.Integration(t)
	bin := redistest.RequireBinary(t, "redis-server")
	base := redistest.PortBlock(t, 4)
	t.Setenv("RCLUSTER_TEST_ADMIN_PW", "cluster-admin-s3cret")
	s, err := spec.Parse([]byte(fmt.Sprintf(`name: tlscluster
ports: %d-%d
replicas: 0
redis_server: %s
dir: state
auth: {password_env: RCLUSTER_TEST_ADMIN_PW}
tls: {generate: true}
config:
  cluster-node-timeout: 2000
  save: ""
  appendonly: false
`, base, base+3, bin)), filepath.Join(t.TempDir(), "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ds := startDaemons(t, s)
	o, err := s.ConnOptions()
	if err != nil {
		t.Fatal(err)
	}
	o.Timeout = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	ranges := [][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}}
	ids := make([]string, len(ds))
	for i, d := range ds {
		c := o.Node(d.addr)
		if i < 3 {
			if err := c.ClusterAddSlotsRange(ctx, ranges[i][0], ranges[i][1]).Err(); err != nil {
				t.Fatalf("node %d: ADDSLOTSRANGE: %v", d.port, err)
			}
		}
		if err := c.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			t.Fatalf("node %d: SET-CONFIG-EPOCH: %v", d.port, err)
		}
		if i > 0 {
			if err := c.ClusterMeet(ctx, s.Host, strconv.Itoa(ds[0].port)).Err(); err != nil {
				t.Fatalf("node %d: MEET: %v", d.port, err)
			}
		}
		if ids[i], err = c.ClusterMyID(ctx).Result(); err != nil {
			t.Fatalf("node %d: MYID: %v", d.port, err)
		}
		c.Close()
	}
	// The last node replicates the first once it has learnt of it.
	rc := o.Node(ds[3].addr)
	defer rc.Close()
	if err := poll(ctx, func() error { return rc.ClusterReplicate(ctx, ids[0]).Err() }); err != nil {
		t.Fatalf("CLUSTER REPLICATE: %v", err)
	}
	if err := poll(ctx, func() error {
		for _, d := range ds {
			c := o.Node(d.addr)
			info, err := c.ClusterInfo(ctx).Result()
			repl, rerr := c.Info(ctx, "replication").Result()
			c.Close()
			switch {
			case err != nil || rerr != nil:
				return fmt.Errorf("node %d: %v %v", d.port, err, rerr)
			case !strings.Contains(info, "cluster_state:ok"):
				return fmt.Errorf("node %d: cluster_state not ok", d.port)
			case !strings.Contains(info, "cluster_known_nodes:4\r"):
				return fmt.Errorf("node %d: does not know all 4 nodes", d.port)
			case strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up"):
				return fmt.Errorf("node %d: replica link down", d.port)
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("cluster over TLS never became healthy: %v", err)
	}
	t.Logf("4 TLS+auth nodes started and formed in %v", time.Since(start).Round(time.Millisecond))

	// Every node lists the TLS ports as the nodes' ports.
	nodes, err := rc.ClusterNodes(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if want := fmt.Sprintf("%s:%d@%d", s.Host, d.port, d.port+spec.BusPortOffset); !strings.Contains(nodes, want) {
			t.Errorf("CLUSTER NODES lacks %s:\n%s", want, nodes)
		}
	}
	// The bus port speaks TLS with the spec's CA.
	dialer := &net.Dialer{Timeout: time.Second}
	conn, err := tls.DialWithDialer(dialer, "tcp", net.JoinHostPort(s.Host, strconv.Itoa(ds[0].port+spec.BusPortOffset)), o.TLSConfig)
	if err != nil {
		t.Errorf("TLS handshake on the cluster bus port: %v", err)
	} else {
		conn.Close()
	}

	// A cluster client with ConnOptions writes across all slots, and the
	// replica receives the first master's writes.
	cc := o.Cluster(s.Addrs())
	defer cc.Close()
	for i := range 50 {
		if err := cc.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatalf("cluster SET k%d: %v", i, err)
		}
	}
	for i := range 50 {
		if v, err := cc.Get(ctx, fmt.Sprintf("k%d", i)).Int(); err != nil || v != i {
			t.Fatalf("cluster GET k%d = %d, %v", i, v, err)
		}
	}
	m0 := o.Node(ds[0].addr)
	defer m0.Close()
	if n, err := m0.Do(ctx, "WAIT", 1, 2000).Int(); err != nil || n != 1 {
		t.Errorf("WAIT 1 on the first master = %d, %v; want the replica to acknowledge", n, err)
	}
	t.Logf("checks done at %v", time.Since(start).Round(time.Millisecond))
	for _, d := range ds {
		procSeesNoSecret(t, s, d, "cluster-admin-s3cret")
	}
	shutdown(t, o, ds)
	t.Logf("shut down at %v", time.Since(start).Round(time.Millisecond))
}
