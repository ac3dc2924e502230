//go:build !linux

package main

import "syscall"

// childAttr puts a child in its own process group (a terminal Ctrl-C goes to
// the harness, which then cleans up in order). Only Linux has a parent-death
// signal, so elsewhere a harness that dies without cleaning up leaves its
// children behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
