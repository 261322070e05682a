package benchsize_test

import (
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/benchsize"
)

func TestPick(t *testing.T) {
	t.Parallel()
	want, wantD := 1000000, time.Minute
	if testing.Short() {
		want, wantD = 1000, time.Second
	}
	if got := benchsize.Pick(1000000, 1000); got != want {
		t.Errorf("Pick(1000000, 1000) = %d with -short %v, want %d", got, testing.Short(), want)
	}
	if got := benchsize.Pick(time.Minute, time.Second); got != wantD {
		t.Errorf("Pick(time.Minute, time.Second) = %v with -short %v, want %v", got, testing.Short(), wantD)
	}
}
