package main

import "syscall"

// childAttr puts a child in its own process group (a terminal Ctrl-C goes to
// the harness, which then cleans up in order) and has the kernel SIGKILL it
// if the harness dies without cleaning up.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
