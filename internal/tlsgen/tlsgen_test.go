package tlsgen

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var hosts = []string{"127.0.0.2", "127.0.0.1", "localhost"}

func readAll(t *testing.T, f Files) [3][]byte {
	t.Helper()
	var out [3][]byte
	for i, p := range []string{f.CA, f.Cert, f.Key} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func TestEnsureGeneratesUsableMaterial(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	now := time.Now()
	f, made, err := Ensure(dir, hosts, now)
	if err != nil || !made {
		t.Fatalf("Ensure = %v, made %v", err, made)
	}
	if f != In(dir) {
		t.Errorf("files = %+v, want %+v", f, In(dir))
	}
	for path, want := range map[string]os.FileMode{dir: os.ModeDir | 0o700, f.Key: 0o600, f.Cert: 0o644, f.CA: 0o644} {
		if got := mode(t, path); got != want {
			t.Errorf("%s mode = %v, want %v", path, got, want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("tls dir holds %d entries, want 3 (no temp files, no CA key)", len(entries))
	}
	if err := Check(f, hosts, now); err != nil {
		t.Fatalf("Check after Ensure: %v", err)
	}

	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Errorf("node key is %T, want ECDSA P-256", pair.PrivateKey)
	}
	wantIPs := []net.IP{net.ParseIP("127.0.0.2"), net.ParseIP("127.0.0.1")}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(wantIPs[0]) || !leaf.IPAddresses[1].Equal(wantIPs[1]) ||
		len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "localhost" {
		t.Errorf("SANs = %v %v, want %v [localhost]", leaf.IPAddresses, leaf.DNSNames, wantIPs)
	}
	if leaf.IsCA {
		t.Error("node certificate is a CA")
	}
	caPEM, _ := os.ReadFile(f.CA)
	block, _ := pem.Decode(caPEM)
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA || !ca.MaxPathLenZero || ca.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("CA: IsCA %v, MaxPathLenZero %v, alg %v", ca.IsCA, ca.MaxPathLenZero, ca.PublicKeyAlgorithm)
	}
	if d := leaf.NotAfter.Sub(now); d < Validity-time.Minute || d > Validity+time.Minute {
		t.Errorf("node certificate valid for %v, want %v", d, Validity)
	}
	// Not valid for other names.
	if err := Check(f, []string{"10.1.2.3"}, now); err == nil {
		t.Error("Check accepted a host the certificate does not name")
	}

	// A real handshake with mutual authentication against the material.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: roots, ClientAuth: tls.RequireAndVerifyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			err = c.(*tls.Conn).Handshake()
			c.Close()
		}
		done <- err
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatalf("TLS dial with generated material: %v", err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
}

func TestEnsureReusesAndRenews(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	f, _, err := Ensure(dir, hosts, now)
	if err != nil {
		t.Fatal(err)
	}
	first := readAll(t, f)
	// Still valid: reused as is.
	if _, made, err := Ensure(dir, hosts, now.Add(time.Hour)); err != nil || made {
		t.Fatalf("second Ensure: made %v, err %v (want reuse)", made, err)
	}
	if got := readAll(t, f); !bytes.Equal(got[0], first[0]) || !bytes.Equal(got[1], first[1]) || !bytes.Equal(got[2], first[2]) {
		t.Error("valid material was rewritten")
	}

	renew := []struct {
		name  string
		hosts []string
		now   time.Time
		spoil func()
	}{
		{"new host", []string{"127.0.0.3", "127.0.0.1", "localhost"}, now, nil},
		{"near expiry", hosts, now.Add(Validity - RenewBefore + time.Hour), nil},
		{"key missing", hosts, now, func() { os.Remove(f.Key) }},
		{"key of another pair", hosts, now, func() {
			_, _, other, err := Generate(hosts, now)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(f.Key, other, 0o600)
		}},
		{"CA of another pair", hosts, now, func() {
			other, _, _, err := Generate(hosts, now)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(f.CA, other, 0o644)
		}},
		{"garbage CA", hosts, now, func() { os.WriteFile(f.CA, []byte("junk"), 0o644) }},
	}
	for _, tc := range renew {
		t.Run(tc.name, func(t *testing.T) {
			before := readAll(t, f)
			if tc.spoil != nil {
				tc.spoil()
			}
			if Check(f, tc.hosts, tc.now) == nil {
				t.Fatal("Check accepted unusable material")
			}
			_, made, err := Ensure(dir, tc.hosts, tc.now)
			if err != nil || !made {
				t.Fatalf("Ensure: made %v, err %v (want new material)", made, err)
			}
			if err := Check(f, tc.hosts, tc.now); err != nil {
				t.Errorf("renewed material: %v", err)
			}
			if after := readAll(t, f); bytes.Equal(after[0], before[0]) || bytes.Equal(after[1], before[1]) {
				t.Error("CA or certificate not replaced")
			}
		})
	}
}

func TestGenerateNeedsHosts(t *testing.T) {
	if _, _, _, err := Generate(nil, time.Now()); err == nil || !strings.Contains(err.Error(), "no hosts") {
		t.Errorf("Generate(nil) err = %v", err)
	}
}
