package procmgr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	psnet "github.com/shirou/gopsutil/v4/net"
	"github.com/shirou/gopsutil/v4/process"
)

// busOffset is Redis Cluster's default bus port offset.
const busOffset = 10000

// checkPorts fails when n's client port or bus port (port+10000) cannot be
// bound on n's host, naming the port and, when the OS tells (see sockets),
// its holder.
func checkPorts(n Node, socks *sockets) error {
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
			holder := socks.holder(p)
			if holder == "" {
				holder = socks.ephemeralHint(p)
			}
			return fmt.Errorf("%s is already in use%s", what, holder)
		}
		return fmt.Errorf("%s: cannot listen on %s: %w", what, n.host(), err)
	}
	return nil
}

// sockets lists the machine's TCP sockets through gopsutil (/proc on
// Linux, lsof on macOS), once and only when a busy port needs explaining.
// The list is empty when the OS will not tell; the detail is then omitted.
type sockets struct {
	once sync.Once
	list []psnet.ConnectionStat
}

// socketsWait bounds listing the sockets (it walks every process's fds).
const socketsWait = 2 * time.Second

func (s *sockets) get() []psnet.ConnectionStat {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), socketsWait)
		defer cancel()
		s.list, _ = psnet.ConnectionsWithoutUidsWithContext(ctx, "tcp")
	})
	return s.list
}

// holder returns " by pid N (cmdline)" for the process listening on TCP
// port p, or "" when the OS does not tell (other users' processes).
func (s *sockets) holder(p int) string {
	for _, c := range s.get() {
		if c.Status != "LISTEN" || c.Laddr.Port != uint32(p) || c.Pid <= 0 {
			continue
		}
		args, err := (&process.Process{Pid: c.Pid}).CmdlineSlice()
		if err != nil || len(args) == 0 {
			return fmt.Sprintf(" by pid %d", c.Pid)
		}
		return fmt.Sprintf(" by pid %d (%s)", c.Pid, cmdlineSummary(args))
	}
	return ""
}

// ephemeralHint explains a busy port nobody listens on: a connection
// (often one in TIME-WAIT, left by a client that has exited) uses it as its
// local port. Ports inside the kernel's ephemeral range are handed out to
// outgoing connections, so with ports above 22768 the bus ports (port +
// 10000) collide now and then. It returns "" when the OS does not show it
// (lsof on macOS lists no TIME-WAIT sockets). The range is Linux's; on
// other systems its detail is omitted.
func (s *sockets) ephemeralHint(p int) string {
	state := ""
	for _, c := range s.get() {
		if c.Status != "LISTEN" && c.Laddr.Port == uint32(p) {
			state = strings.ReplaceAll(c.Status, "_", "-")
			break
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

// cmdlineSummary turns a command line into one short line for an error
// message: any whitespace inside arguments (python -c scripts, shell
// snippets) collapses to single spaces, at most 80 runes.
func cmdlineSummary(args []string) string {
	c := strings.Join(strings.Fields(strings.Join(args, " ")), " ")
	if r := []rune(c); len(r) > 80 {
		c = string(r[:80]) + "..."
	}
	return c
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

// unbound reports whether n's port can be bound on n's host, i.e. no
// socket listens on it. A listener is closed again at once.
func unbound(n Node) bool {
	l, err := net.Listen("tcp", n.Addr())
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// CheckPorts checks, without starting anything, that every node's client
// port and bus port (port+10000) can be bound on its host. The error joins
// one line per busy port, naming the port and, when the OS tells, its holder.
func CheckPorts(nodes []Node) error {
	var errs []error
	var socks sockets
	for _, n := range nodes {
		if err := checkPorts(n, &socks); err != nil {
			errs = append(errs, fmt.Errorf("node %d: %w", n.Port, err))
		}
	}
	return errors.Join(errs...)
}
