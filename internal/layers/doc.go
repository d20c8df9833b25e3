// Package layers holds no code: its test checks the import rules of
// docs/design.md ("Packages and dependency direction") against the tree.
package layers
