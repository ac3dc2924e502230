//go:build !linux

package redistest

import "syscall"

// nodeSysProcAttr puts a node in its own process group. Only Linux has a
// parent-death signal, so elsewhere a test binary that dies before its
// cleanup runs leaves its nodes behind.
func nodeSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
