package main

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCreateInterspersedFlags(t *testing.T) {
	o := createFlags{timeout: time.Minute, callTimeout: 2 * time.Second}
	rest, err := o.parseInterspersed([]string{"10.0.0.1:6379", "10.0.0.2:6379", "--replicas", "1", "h:1", "--timeout=5s", "-q", "h:2"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.1:6379", "10.0.0.2:6379", "h:1", "h:2"}; !reflect.DeepEqual(rest, want) {
		t.Errorf("args = %v, want %v", rest, want)
	}
	if o.replicas != 1 || o.timeout != 5*time.Second || !o.quiet || o.callTimeout != 2*time.Second {
		t.Errorf("flags = %+v", o)
	}
	if _, err := o.parseInterspersed([]string{"a:1", "--replicas", "x"}); err == nil {
		t.Error("--replicas x: no error")
	}
}

func TestCreateUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"create"}, "give the nodes as HOST:PORT arguments"},
		{[]string{"create", "10.0.0.1", "10.0.0.2:6379"}, `"10.0.0.1" is not host:port`},
		{[]string{"create", "a:1", "b:1", "c:1", "--replicas", "-1"}, "--replicas must be 0 or more"},
		{[]string{"create", "a:1", "b:1", "c:1", "--bogus"}, "flag provided but not defined: -bogus"},
	} {
		var out, errb bytes.Buffer
		err := Run(context.Background(), append([]string{"rcluster"}, tc.args...), &out, &errb)
		if code := ExitCode(err, &errb); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errb.String(), tc.want)
		}
	}
	// Too few masters is a spec error (exit 2) found before any network use.
	var out, errb bytes.Buffer
	err := Run(context.Background(), []string{"rcluster", "create", "10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1", "--replicas", "1"}, &out, &errb)
	if code := ExitCode(err, &errb); code != 2 || !strings.Contains(errb.String(), "Redis Cluster needs at least 3") {
		t.Errorf("3 nodes, 1 replica: exit %d, %q", code, errb.String())
	}
}
