package redistest

import "syscall"

// nodeSysProcAttr puts a node in its own process group and has the kernel
// kill it if the test binary dies before its cleanup runs.
func nodeSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
