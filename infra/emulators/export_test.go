package emulators

import "testing"

// SetShort makes the package see -short as v until tb ends. Only for tests
// that are not parallel.
func SetShort(tb testing.TB, v bool) {
	old := short
	short = func() bool { return v }
	tb.Cleanup(func() { short = old })
}

// NewShared returns the getter of a shared emulator of kind that start
// starts, outside the package's list (Main does not stop it).
func NewShared(kind Kind, start func() (*Process, error)) func(testing.TB) string {
	s := &sharedProcess{kind: kind, start: start}
	return s.get
}
