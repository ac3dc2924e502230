package redisconn

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rcluster/rcluster/internal/tlsgen"
)

// serveTLS accepts TLS connections on 127.0.0.1 with the node certificate
// in f, requiring a client certificate signed by f.CA when mutual is set.
// Each handshake's error (nil on success) is sent on the returned channel.
func serveTLS(t *testing.T, f tlsgen.Files, mutual bool) (string, <-chan error) {
	t.Helper()
	srv, err := TLSFiles{CACert: f.CA, Cert: f.Cert, Key: f.Key}.Config()
	if err != nil {
		t.Fatal(err)
	}
	if mutual {
		srv.ClientCAs, srv.ClientAuth = srv.RootCAs, tls.RequireAndVerifyClientCert
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	results := make(chan error, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			results <- c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return ln.Addr().String(), results
}

func dial(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// TLS 1.3 reports a rejected client certificate on the first read.
	_, err = c.Read(make([]byte, 1))
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

func TestTLSFilesConfigHandshakes(t *testing.T) {
	dir := t.TempDir()
	f, _, err := tlsgen.Ensure(dir, []string{"127.0.0.1", "localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	addr, results := serveTLS(t, f, true)

	good, err := TLSFiles{CACert: f.CA, Cert: f.Cert, Key: f.Key}.Config()
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(addr, good); err != nil {
		t.Errorf("CA + client certificate: %v", err)
	}
	if err := <-results; err != nil {
		t.Errorf("server side of a good handshake: %v", err)
	}

	noCert, err := TLSFiles{CACert: f.CA}.Config()
	if err != nil {
		t.Fatal(err)
	}
	_ = dial(addr, noCert) // the client may or may not see the rejection
	if err := <-results; err == nil {
		t.Errorf("server accepted a client without a certificate")
	}

	// The system trust store does not know the throwaway CA.
	sys, err := TLSFiles{Cert: f.Cert, Key: f.Key}.Config()
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(addr, sys); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without --cacert the throwaway CA was trusted: %v", err)
	}
	<-results

	// SNI: a name the certificate does not carry fails verification.
	other, err := TLSFiles{CACert: f.CA, Cert: f.Cert, Key: f.Key, ServerName: "redis.example"}.Config()
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(addr, other); err == nil || !strings.Contains(err.Error(), "redis.example") {
		t.Errorf("server name redis.example: %v, want a name mismatch", err)
	}
	<-results
	named, err := TLSFiles{CACert: f.CA, Cert: f.Cert, Key: f.Key, ServerName: "localhost"}.Config()
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(addr, named); err != nil {
		t.Errorf("server name localhost: %v", err)
	}
	<-results
}

func TestTLSFilesConfigErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	f, _, err := tlsgen.Ensure(dir, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.crt")
	for _, c := range []struct {
		name  string
		files TLSFiles
		want  string
	}{
		{"missing CA", TLSFiles{CACert: missing}, missing},
		{"CA not PEM", TLSFiles{CACert: notPEM}, notPEM},
		{"cert without key", TLSFiles{CACert: f.CA, Cert: f.Cert}, "no key file"},
		{"key without cert", TLSFiles{CACert: f.CA, Key: f.Key}, "no certificate file"},
		{"key is not the cert's", TLSFiles{CACert: f.CA, Cert: f.Cert, Key: notPEM}, f.Cert},
	} {
		_, err := c.files.Config()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %q", c.name, err, c.want)
		}
	}
}
