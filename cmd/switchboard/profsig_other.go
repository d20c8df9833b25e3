//go:build bench && !unix

package main

import (
	"errors"
	"os"
)

// notifyProfile fails: the heap profile is requested with SIGUSR1, which
// this system does not have.
func notifyProfile(chan<- os.Signal) error {
	return errors.New("--memprofile needs SIGUSR1, which this system does not have")
}
