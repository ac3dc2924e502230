package containers

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestNextFreeSkipsGatewayNetworkAndBroadcast(t *testing.T) {
	subnet := netip.MustParsePrefix("10.9.8.0/30") // .0 net, .1 gw, .2 host, .3 broadcast
	used := map[netip.Addr]bool{netip.MustParseAddr("10.9.8.1"): true}
	a, err := nextFree(subnet, used)
	if err != nil || a != netip.MustParseAddr("10.9.8.2") {
		t.Fatalf("first address = %v, %v; want 10.9.8.2", a, err)
	}
	if a, err := nextFree(subnet, used); err == nil {
		t.Fatalf("full /30 gave %v, want an error", a)
	}
}

func TestNextFreeIsSequentialAndUnique(t *testing.T) {
	subnet := netip.MustParsePrefix("172.30.0.0/16")
	used := map[netip.Addr]bool{netip.MustParseAddr("172.30.0.1"): true}
	var got []string
	for range 3 {
		a, err := nextFree(subnet, used)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a.String())
	}
	want := []string{"172.30.0.2", "172.30.0.3", "172.30.0.4"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestOptions(t *testing.T) {
	c := defaultConfig()
	for _, o := range []Option{
		WithImage("img:x"), WithArgs("--a", "1"), WithArgs("--b", "2"),
		WithLabels(map[string]string{"k": "v"}), WithStartupTimeout(time.Second), WithStopTimeout(0),
	} {
		o(&c)
	}
	if c.image != "img:x" || !slices.Equal(c.args, []string{"--a", "1", "--b", "2"}) ||
		c.labels["k"] != "v" || c.startupTimeout != time.Second || c.stopTimeout != 0 {
		t.Fatalf("options not applied: %+v", c)
	}
	d := defaultConfig()
	if d.image != DefaultImage || d.startupTimeout <= 0 || len(d.args) != 0 {
		t.Fatalf("bad defaults: %+v", d)
	}
}

func TestDefaultArgsHaveReadyLogLevel(t *testing.T) {
	// ForLog(ReadyLog) needs a log level that prints it (warning hides it).
	i := slices.Index(DefaultArgs, "--loglevel")
	if i < 0 || DefaultArgs[i+1] != "notice" && DefaultArgs[i+1] != "verbose" {
		t.Fatalf("DefaultArgs log level hides %q: %v", ReadyLog, DefaultArgs)
	}
	if !slices.Contains(DefaultArgs, "--protected-mode") {
		t.Fatal("DefaultArgs must turn protected mode off: the host connects from outside")
	}
}

func TestRepoRootFindsGoMod(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "scripts", "build-image.sh")); err != nil {
		t.Fatalf("repo root %s has no scripts/build-image.sh: %v", root, err)
	}
}

func TestAddrs(t *testing.T) {
	ns := []*Node{{Addr: "10.0.0.2:6379"}, {Addr: "10.0.0.3:6379"}}
	if got := Addrs(ns); !slices.Equal(got, []string{"10.0.0.2:6379", "10.0.0.3:6379"}) {
		t.Fatalf("Addrs = %v", got)
	}
}
