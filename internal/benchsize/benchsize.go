// Package benchsize picks the size of a benchmark's fixture: the full one
// (make bench), or under go test -short a small one that still takes every
// code path of the full run. make bench-smoke (part of make test) runs every
// benchmark once under -short, so that none rots unseen; the figures of a
// smoke run mean nothing.
package benchsize

import "testing"

// Pick returns short under go test -short and full otherwise. Keep one call
// per size, where the size is defined, so that the full and the smoke size
// sit side by side.
func Pick[T ~int | ~int64 | ~float64](full, short T) T {
	if testing.Short() {
		return short
	}
	return full
}
