//go:build unix

package loadtest

import "syscall"

// requestProfile asks a "bench server --memprofile" for a heap profile.
func (s *runningServer) requestProfile() { s.signal(syscall.SIGUSR1) }
