//go:build race

package client_test

// The race detector allows at most 8128 live goroutines.
const herd = 4_000
