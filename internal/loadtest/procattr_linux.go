package loadtest

import "syscall"

// dieWithParent is the SysProcAttr of every process the bench starts: it
// dies with the coordinator even if that is killed, so no orphaned workers
// hold thousands of connections.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
