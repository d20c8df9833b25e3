//go:build unix

package server

import "syscall"

// openFileLimit is the process's soft limit on open files, which every
// connection counts against.
func openFileLimit() (uint64, bool) {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return 0, false
	}
	return uint64(lim.Cur), true
}
