package procmgr

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// busOffset is Redis Cluster's default bus port offset.
const busOffset = 10000

// checkPorts fails when n's client port or bus port (port+10000) cannot be
// bound on n's host, naming the port and, when /proc tells, its holder.
func checkPorts(n Node) error {
	for _, p := range []int{n.Port, n.Port + busOffset} {
		l, err := net.Listen("tcp", net.JoinHostPort(n.host(), strconv.Itoa(p)))
		if err == nil {
			l.Close()
			continue
		}
		what := fmt.Sprintf("port %d", p)
		if p != n.Port {
			what = fmt.Sprintf("cluster bus port %d (port %d + %d)", p, n.Port, busOffset)
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			holder := portHolder(p)
			if holder == "" {
				holder = ephemeralHint(p)
			}
			return fmt.Errorf("%s is already in use%s", what, holder)
		}
		return fmt.Errorf("%s: cannot listen on %s: %w", what, n.host(), err)
	}
	return nil
}

// portHolder returns " by pid N (cmdline)" for the process listening on
// TCP port p, or "" when /proc does not tell (other users' processes).
func portHolder(p int) string {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, ino := range listeningInodes(string(b), p) {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return ""
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	deadline := time.Now().Add(2 * time.Second)
	for _, dir := range procs {
		if time.Now().After(deadline) {
			break
		}
		fds, _ := os.ReadDir(dir + "/fd")
		for _, fd := range fds {
			l, err := os.Readlink(dir + "/fd/" + fd.Name())
			if err != nil || !strings.HasPrefix(l, "socket:[") {
				continue
			}
			if inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] {
				pid := filepath.Base(dir)
				cmd, _ := os.ReadFile(dir + "/cmdline")
				return fmt.Sprintf(" by pid %s (%s)", pid, cmdlineSummary(cmd))
			}
		}
	}
	return ""
}

// tcpStates names the TCP states /proc/net/tcp{,6} uses.
var tcpStates = map[string]string{"01": "ESTABLISHED", "02": "SYN-SENT", "04": "FIN-WAIT-1",
	"05": "FIN-WAIT-2", "06": "TIME-WAIT", "08": "CLOSE-WAIT", "09": "LAST-ACK", "0B": "CLOSING"}

// ephemeralHint explains a busy port nobody listens on: a connection
// (often one in TIME-WAIT, left by a client that has exited) uses it as its
// local port. Ports inside the kernel's ephemeral range are handed out to
// outgoing connections, so with ports above 22768 the bus ports (port +
// 10000) collide now and then. It returns "" when /proc does not show it.
func ephemeralHint(p int) string {
	var state string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if b, err := os.ReadFile(f); err == nil && state == "" {
			state = localPortState(string(b), p)
		}
	}
	if state == "" {
		return ""
	}
	hint := fmt.Sprintf(" by a connection in %s using it as its local port", state)
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			lo, _ := strconv.Atoi(f[0])
			hi, _ := strconv.Atoi(f[1])
			if p >= lo && p <= hi {
				hint += fmt.Sprintf(" (%d is in the kernel's ephemeral port range %d-%d, which outgoing connections take from: "+
					"retry in a minute, or pick ports whose bus ports (port+%d) lie below it)", p, lo, hi, busOffset)
			}
		}
	}
	return hint
}

// localPortState returns the state of a non-listening socket whose local
// port is p in a /proc/net/tcp{,6} table, or "".
func localPortState(table string, p int) string {
	for _, line := range strings.Split(table, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] == "0A" {
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		if v, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(v) == p {
			if st, ok := tcpStates[f[3]]; ok {
				return st
			}
			return "state " + f[3]
		}
	}
	return ""
}

// cmdlineSummary turns /proc/PID/cmdline into one short line for an
// error message: NULs and any whitespace inside arguments (python -c
// scripts, shell snippets) collapse to single spaces, at most 80 runes.
func cmdlineSummary(raw []byte) string {
	c := strings.Join(strings.Fields(strings.ReplaceAll(string(raw), "\x00", " ")), " ")
	if r := []rune(c); len(r) > 80 {
		c = string(r[:80]) + "..."
	}
	return c
}

// listeningInodes parses /proc/net/tcp{,6} and returns the socket inodes
// in LISTEN state (st 0A) on local port p.
func listeningInodes(table string, p int) []string {
	var out []string
	for _, line := range strings.Split(table, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "0A" {
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		if v, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(v) == p {
			out = append(out, f[9])
		}
	}
	return out
}

// dialPort tries n's address once: refused is true when nothing listens;
// otherwise err is nil when a connection was accepted, or says why the
// dial failed in another way (a timeout on a host too busy to answer).
func dialPort(n Node) (refused bool, err error) {
	c, err := net.DialTimeout("tcp", n.Addr(), 200*time.Millisecond)
	switch {
	case err == nil:
		c.Close()
		return false, nil
	case errors.Is(err, syscall.ECONNREFUSED):
		return true, nil
	default:
		return false, err
	}
}

// listening reports whether /proc/net/tcp{,6} shows a socket listening on
// port p; ok is false when neither table can be read.
func listening(p int) (yes, ok bool) {
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		ok = true
		if len(listeningInodes(string(b), p)) > 0 {
			return true, true
		}
	}
	return false, ok
}

// CheckPorts checks, without starting anything, that every node's client
// port and bus port (port+10000) can be bound on its host. The error joins
// one line per busy port, naming the port and, when /proc tells, its holder.
func CheckPorts(nodes []Node) error {
	var errs []error
	for _, n := range nodes {
		if err := checkPorts(n); err != nil {
			errs = append(errs, fmt.Errorf("node %d: %w", n.Port, err))
		}
	}
	return errors.Join(errs...)
}
