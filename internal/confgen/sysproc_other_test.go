//go:build !linux

package confgen

import "syscall"

// serverSysProcAttr puts a test's redis-server in its own process group.
// Only Linux has a parent-death signal, so elsewhere a test binary that dies
// before its cleanup runs leaves the server behind.
func serverSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
