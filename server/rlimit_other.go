//go:build !unix

package server

// openFileLimit reports no limit: sockets on Windows do not count against
// an open-file limit, so MaxConnections 0 leaves connections uncapped.
func openFileLimit() (uint64, bool) { return 0, false }
