package confgen

import "syscall"

// serverSysProcAttr puts a test's redis-server in its own process group and
// has the kernel kill it if the test binary dies before its cleanup runs.
func serverSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
