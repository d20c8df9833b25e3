//go:build bench && unix

package main

import (
	"os"
	"os/signal"
	"syscall"
)

// notifyProfile relays SIGUSR1, the bench's request for a heap profile
// (bench server --memprofile), to c.
func notifyProfile(c chan<- os.Signal) error {
	signal.Notify(c, syscall.SIGUSR1)
	return nil
}
