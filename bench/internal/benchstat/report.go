package benchstat

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// Host records where a report's figures come from.
type Host struct {
	CPUs         int    `json:"cpus"`
	GoVersion    string `json:"go"`
	RedisVersion string `json:"redis"`
}

// ThisHost describes this machine, with the version redisServer (a path
// or a name on PATH) reports.
func ThisHost(redisServer string) Host {
	return Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), RedisVersion: RedisVersion(redisServer)}
}

// RedisVersion is the v= field of `bin --version` ("unknown" when it does
// not run).
func RedisVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "unknown"
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return v
		}
	}
	return strings.TrimSpace(string(out))
}

// EmitJSON writes report, indented, to the file path, or to stdout when
// path is "-".
func EmitJSON(path string, stdout io.Writer, report any) error {
	write := func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	if path == "-" {
		return write(stdout)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}
