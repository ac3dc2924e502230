package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/rcluster/rcluster/internal/spec"
)

// envVar is one exported variable.
type envVar struct {
	Key, Value string
	// Secret values are masked in GitHub Actions logs.
	Secret bool
}

// specAuth returns the credentials of rcluster's admin identity: the
// default user with auth.password (empty when the spec has no auth:).
func specAuth(s *spec.Spec) (user, password string) {
	if s.Auth == nil {
		return "", ""
	}
	return "", s.Auth.Password.Reveal()
}

func specTLS(s *spec.Spec) bool { return s.TLS != nil }

// clusterEnv is the connection information other programs need, in a fixed
// order:
//
//	REDIS_CLUSTER_NODES  host:port of every node, comma separated
//	REDIS_HOST/PORT      the first node
//	REDIS_URL            redis://[:password@]first-node (a seed for any client)
//	REDIS_CLUSTER_URL    redis://[:password@]first?addr=second&addr=... as
//	                     go-redis's redis.ParseClusterURL reads it
//	REDISCLI_AUTH        the password, when the spec sets one (redis-cli reads it)
//	REDIS_TLS_CA_FILE,   with tls:, the CA to trust and the client certificate
//	REDIS_TLS_CERT_FILE, and key to present (redis-cli --cacert/--cert/--key);
//	REDIS_TLS_KEY_FILE   the URLs then use rediss://
//	RCLUSTER_FILE        the spec file (absolute), so later rcluster commands
//	                     find the same cluster without -f
func clusterEnv(s *spec.Spec) ([]envVar, error) {
	addrs := s.Addrs()
	if len(addrs) == 0 {
		return nil, fmt.Errorf("spec %s has no nodes", s.Describe())
	}
	host, port, err := net.SplitHostPort(addrs[0])
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", addrs[0], err)
	}
	user, password := specAuth(s)
	u := url.URL{Scheme: "redis", Host: addrs[0]}
	if specTLS(s) {
		u.Scheme = "rediss"
	}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else if user != "" {
		u.User = url.User(user)
	}
	seed := u.String()
	var q []string
	for _, a := range addrs[1:] {
		q = append(q, "addr="+a) // host:port needs no escaping in a query
	}
	clusterURL := seed
	if len(q) > 0 {
		clusterURL += "?" + strings.Join(q, "&")
	}
	vars := []envVar{
		{Key: "REDIS_CLUSTER_NODES", Value: strings.Join(addrs, ",")},
		{Key: "REDIS_HOST", Value: host},
		{Key: "REDIS_PORT", Value: port},
		{Key: "REDIS_URL", Value: seed, Secret: password != ""},
		{Key: "REDIS_CLUSTER_URL", Value: clusterURL, Secret: password != ""},
	}
	if user != "" {
		vars = append(vars, envVar{Key: "REDISCLI_USER", Value: user})
	}
	if password != "" {
		vars = append(vars, envVar{Key: "REDISCLI_AUTH", Value: password, Secret: true})
	}
	if specTLS(s) {
		f := s.TLSFiles()
		vars = append(vars, envVar{Key: "REDIS_TLS_CA_FILE", Value: f.CA})
		if s.TLSAuthClients() != "no" {
			vars = append(vars, envVar{Key: "REDIS_TLS_CERT_FILE", Value: f.ClientCert},
				envVar{Key: "REDIS_TLS_KEY_FILE", Value: f.ClientKey})
		}
	}
	if s.Path != "" {
		abs, err := filepath.Abs(s.Path)
		if err != nil {
			return nil, fmt.Errorf("spec path %s: %w", s.Path, err)
		}
		vars = append(vars, envVar{Key: spec.EnvFile, Value: abs})
	}
	return vars, nil
}

var envFormats = []string{"shell", "dotenv", "json", "github"}

func envCommand(fileFlag cli.Flag, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "env",
		Usage: "print the cluster's connection info as environment variables for other programs",
		UsageText: "rcluster env [-f cluster.yaml] [--format shell|dotenv|json|github]\n\n" +
			"Prints REDIS_CLUSTER_NODES, REDIS_HOST, REDIS_PORT, REDIS_URL, REDIS_CLUSTER_URL\n" +
			"(go-redis's ParseClusterURL form), REDISCLI_AUTH when the spec sets a password\n" +
			"(also in the URLs), REDIS_TLS_CA_FILE/CERT_FILE/KEY_FILE with tls: (rediss://\n" +
			"URLs), and RCLUSTER_FILE when the spec is a file. It reads only the spec: the\n" +
			"cluster need not be running.\n\n" +
			"Examples:\n" +
			"   eval \"$(rcluster env)\" && go test ./...\n" +
			"   rcluster env --format dotenv > .env\n" +
			"   rcluster env --format github   # in GitHub Actions: appends to $GITHUB_ENV",
		Flags: []cli.Flag{fileFlag,
			&cli.StringFlag{Name: "format", Value: "shell",
				Usage: "`FORMAT`: shell (export lines for eval), dotenv (KEY=VALUE), json, or github (append to $GITHUB_ENV)"},
		},
		Action: func(c *cli.Context) error {
			format := c.String("format")
			if !contains(envFormats, format) {
				return usagef("--format %q: want one of %s", format, strings.Join(envFormats, ", "))
			}
			if c.NArg() > 0 {
				return usagef("env takes no arguments, got %q", c.Args().First())
			}
			s, err := loadSpec(c)
			if err != nil {
				return err
			}
			vars, err := clusterEnv(s)
			if err != nil {
				return err
			}
			switch format {
			case "shell":
				return writeShellEnv(stdout, vars)
			case "dotenv":
				return writeDotenv(stdout, vars)
			case "json":
				return writeJSONEnv(stdout, vars)
			}
			path := os.Getenv("GITHUB_ENV")
			if path == "" {
				return usagef("--format github appends to the file named by $GITHUB_ENV, which is not set (not in GitHub Actions?)")
			}
			if err := appendGitHubEnv(path, stdout, vars); err != nil {
				return err
			}
			if verbosity(c) > levelQuiet {
				fmt.Fprintf(stderr, "rcluster: wrote %d variables to $GITHUB_ENV\n", len(vars))
			}
			return nil
		},
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// shellQuote quotes v for POSIX shells: single quotes, with each ' written
// as '\”. The result is one word whatever v holds.
func shellQuote(v string) string {
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

// writeShellEnv prints `export KEY='value'` lines for eval in sh, bash, zsh.
func writeShellEnv(w io.Writer, vars []envVar) error {
	var b strings.Builder
	for _, v := range vars {
		fmt.Fprintf(&b, "export %s=%s\n", v.Key, shellQuote(v.Value))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// dotenvSafe holds the characters a dotenv value may carry unquoted.
func dotenvSafe(v string) bool {
	for _, r := range v {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-.,:/@?&=%+[]", r)
		if !ok {
			return false
		}
	}
	return true
}

// writeDotenv prints KEY=value lines. Values with other characters than
// dotenvSafe's are double-quoted with \\, \", \$, \` and \n escaped, as
// docker compose and the dotenv libraries read them.
func writeDotenv(w io.Writer, vars []envVar) error {
	var b strings.Builder
	for _, v := range vars {
		val := v.Value
		if !dotenvSafe(val) {
			r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`", "\n", `\n`, "\r", `\r`)
			val = `"` + r.Replace(val) + `"`
		}
		fmt.Fprintf(&b, "%s=%s\n", v.Key, val)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeJSONEnv(w io.Writer, vars []envVar) error {
	m := make(map[string]string, len(vars))
	for _, v := range vars {
		m[v.Key] = v.Value
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // keep the URLs' & readable
	return enc.Encode(m)
}

// appendGitHubEnv appends the variables to GitHub Actions' $GITHUB_ENV file
// (later steps see them). Single-line values are KEY=value; a value with a
// line break uses the KEY<<DELIMITER form with a random delimiter the value
// does not contain. Secret values are first masked in the job log with an
// ::add-mask:: command on stdout.
func appendGitHubEnv(path string, stdout io.Writer, vars []envVar) error {
	var b strings.Builder
	for _, v := range vars {
		if v.Secret {
			for _, line := range strings.Split(v.Value, "\n") {
				if line = strings.TrimRight(line, "\r"); line != "" {
					fmt.Fprintf(stdout, "::add-mask::%s\n", line)
				}
			}
		}
		if !strings.ContainsAny(v.Value, "\r\n") {
			fmt.Fprintf(&b, "%s=%s\n", v.Key, v.Value)
			continue
		}
		delim, err := heredocDelimiter(v.Value)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s<<%s\n%s\n%s\n", v.Key, delim, v.Value, delim)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("GITHUB_ENV: %w", err)
	}
	if _, err := io.WriteString(f, b.String()); err != nil {
		f.Close()
		return fmt.Errorf("GITHUB_ENV %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("GITHUB_ENV %s: %w", path, err)
	}
	return nil
}

func heredocDelimiter(value string) (string, error) {
	for range 10 {
		buf := make([]byte, 8)
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("heredoc delimiter: %w", err)
		}
		d := "ghadelimiter_" + hex.EncodeToString(buf)
		if !strings.Contains(value, d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("heredoc delimiter: no unused delimiter found")
}
