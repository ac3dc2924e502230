// Package tlsgen makes the throwaway TLS material of a spec with
// `tls: {generate: true}`: a private CA and one node certificate (used by
// every node as server and client certificate, and by rcluster as its client
// certificate), ECDSA P-256, written with Go's crypto/x509.
//
// The CA's private key is never written: the CA exists only to sign the node
// certificate, so nothing else can ever be signed by it. Existing material is
// reused while it is valid for the hosts and not close to expiry; otherwise
// all of it is replaced (nodes read their certificates only at start).
package tlsgen

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names inside the TLS directory.
const (
	CAFile   = "ca.crt"
	CertFile = "node.crt"
	KeyFile  = "node.key"
)

// Validity of generated certificates, and how close to expiry existing ones
// may get before Ensure replaces them.
const (
	Validity    = 365 * 24 * time.Hour
	RenewBefore = 30 * 24 * time.Hour
)

// Files are the paths of the material in one directory.
type Files struct {
	CA   string // CA certificate (PEM), the trust root for nodes and clients
	Cert string // node certificate (PEM), server and client auth
	Key  string // node private key (PEM, PKCS#8), mode 0600
}

// In returns the file paths inside dir.
func In(dir string) Files {
	return Files{CA: filepath.Join(dir, CAFile), Cert: filepath.Join(dir, CertFile), Key: filepath.Join(dir, KeyFile)}
}

// Ensure makes dir (0700) hold a CA certificate and a node certificate and
// key valid for every host (IP addresses or DNS names). It reuses what is
// there when it still fits, and reports whether it generated new material.
func Ensure(dir string, hosts []string, now time.Time) (Files, bool, error) {
	f := In(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, false, fmt.Errorf("tls dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return f, false, fmt.Errorf("tls dir: %w", err)
	}
	if Check(f, hosts, now) == nil {
		return f, false, nil
	}
	ca, cert, key, err := Generate(hosts, now)
	if err != nil {
		return f, false, err
	}
	// Key first, then certificate, then CA: a crash in between leaves a set
	// that Check rejects, so the next run regenerates it.
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{f.Key, key, 0o600}, {f.Cert, cert, 0o644}, {f.CA, ca, 0o644}} {
		if err := writeFile(w.path, w.data, w.mode); err != nil {
			return f, false, err
		}
	}
	return f, true, nil
}

// Check reports why the material in f cannot be used for hosts at now, or
// nil when it can: the files parse, the key belongs to the certificate, the
// certificate chains to the CA for server and client use, names every host,
// and stays valid for at least RenewBefore.
func Check(f Files, hosts []string, now time.Time) error {
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return fmt.Errorf("node certificate: %w", err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("node certificate %s: %w", f.Cert, err)
		}
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return fmt.Errorf("CA certificate: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("CA certificate %s: no PEM certificate", f.CA)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return fmt.Errorf("node certificate %s: %w", f.Cert, err)
		}
	}
	for _, h := range hosts {
		if err := leaf.VerifyHostname(h); err != nil {
			return fmt.Errorf("node certificate %s: %w", f.Cert, err)
		}
	}
	if now.Add(RenewBefore).After(leaf.NotAfter) {
		return fmt.Errorf("node certificate %s: expires %s", f.Cert, leaf.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// Generate returns a new CA certificate, node certificate and node key (all
// PEM) for hosts, valid from shortly before now for Validity.
func Generate(hosts []string, now time.Time) (caPEM, certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, nil, errors.New("tls: no hosts for the node certificate")
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls: CA key: %w", err)
	}
	notBefore, notAfter := now.Add(-time.Hour), now.Add(Validity)
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"rcluster"}, CommonName: "rcluster throwaway CA"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls: CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls: CA certificate: %w", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls: node key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"rcluster"}, CommonName: "rcluster node"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Nodes present it as servers and, on the cluster bus and
		// replication links, as clients; rcluster presents it as a client.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	seen := map[string]bool{}
	for _, h := range hosts {
		if seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls: node certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls: node key: %w", err)
	}
	return pemBlock("CERTIFICATE", caDER), pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil || n.Sign() == 0 {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func pemBlock(typ string, der []byte) []byte {
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: typ, Bytes: der})
	return b.Bytes()
}

// writeFile replaces path atomically with data at mode. The temporary file
// is created 0600, so a key is never readable by others, not even briefly.
func writeFile(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
