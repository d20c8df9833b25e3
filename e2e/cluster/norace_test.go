//go:build !race

package cluster_test

// raceBuild: the tests run without -race, and so do the nodes.
const raceBuild = false
