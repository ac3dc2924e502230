package redisconn

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
)

func TestOptionsNeverPrintPassword(t *testing.T) {
	o := Options{Username: "app", Password: "s3cret-pw", TLSConfig: &tls.Config{}}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		for _, v := range []any{o, &o, struct{ Conn Options }{o}, []Options{o}} {
			if out := fmt.Sprintf(verb, v); strings.Contains(out, "s3cret-pw") {
				t.Errorf("Sprintf(%s, %T) leaks the password: %s", verb, v, out)
			}
		}
	}
	if got, want := o.String(), "{Username:app Password:[redacted] TLS:true Timeout:0s NoRetry:false}"; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
}

func TestClientsCarryAuthAndTLS(t *testing.T) {
	cfg := &tls.Config{ServerName: "x"}
	o := Options{Username: "app", Password: "pw", TLSConfig: cfg}
	c := o.Node("127.0.0.1:1")
	defer c.Close()
	if co := c.Options(); co.Username != "app" || co.Password != "pw" || co.TLSConfig != cfg {
		t.Errorf("Node client options: user %q, password set %v, tls %p (want %p)", co.Username, co.Password == "pw", co.TLSConfig, cfg)
	}
	cc := o.Cluster([]string{"127.0.0.1:1"})
	defer cc.Close()
	if co := cc.Options(); co.Username != "app" || co.Password != "pw" || co.TLSConfig != cfg {
		t.Errorf("Cluster client options: user %q, password set %v, tls %p (want %p)", co.Username, co.Password == "pw", co.TLSConfig, cfg)
	}
}
