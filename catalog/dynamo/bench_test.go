package dynamo_test

import (
	"fmt"
	"testing"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/storetest"
)

// BenchmarkOpen measures what the conformance suite pays per store: a new
// table on DynamoDB Local and Open.
func BenchmarkOpen(b *testing.B) {
	for b.Loop() {
		open(b)
	}
}

func BenchmarkCreate(b *testing.B) {
	s := open(b)
	i := 0
	for b.Loop() {
		i++
		if _, err := s.Create(b.Context(), storetest.NewTenant(fmt.Sprintf("t-%06d", i)), "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	s := open(b)
	if _, err := s.Create(b.Context(), storetest.NewTenant("acme"), "bench"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Get(b.Context(), "acme"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadOutbox(b *testing.B) {
	s := open(b)
	for i := range 50 {
		if _, err := s.Create(b.Context(), storetest.NewTenant(fmt.Sprintf("t-%03d", i)), "bench"); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if _, err := s.ReadOutbox(b.Context(), 0, 0, catalog.DefaultPageSize); err != nil {
			b.Fatal(err)
		}
	}
}
