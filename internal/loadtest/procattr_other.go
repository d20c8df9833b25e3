//go:build !linux

package loadtest

import "syscall"

// dieWithParent has no parent-death signal to ask for outside Linux.
// Workers still quit when their standard input closes with the
// coordinator; a server the bench started can outlive a killed one.
func dieWithParent() *syscall.SysProcAttr { return nil }
