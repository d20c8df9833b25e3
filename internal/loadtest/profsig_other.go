//go:build !unix

package loadtest

// requestProfile does nothing: there is no SIGUSR1 to send, and "bench
// server" refuses --memprofile on such a system.
func (s *runningServer) requestProfile() {}
