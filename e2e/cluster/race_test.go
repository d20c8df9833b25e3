//go:build race

package cluster_test

// raceBuild: the tests run with -race, so the nodes are built with it too.
const raceBuild = true
