package boltfile

import (
	"context"

	"go.etcd.io/bbolt"
)

// View runs fn in a read transaction of db and returns what it returns, so
// that a read path is one call instead of a captured variable, a closure
// that sets it and a check of ctx. A done ctx returns ctx.Err() without
// starting a transaction; an error (ctx's, bbolt's or fn's, passed through
// as it is) comes with T's zero value, whatever fn returned beside it.
//
// Everything fn reads sees one snapshot of the file, however many
// transactions commit meanwhile. What it returns must not point into the
// transaction's memory (bbolt's keys and values are valid only inside it):
// decode or copy what it keeps.
func View[T any](ctx context.Context, db *bbolt.DB, fn func(tx *bbolt.Tx) (T, error)) (T, error) {
	var out, zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	err := db.View(func(tx *bbolt.Tx) error {
		var err error
		out, err = fn(tx)
		return err
	})
	if err != nil {
		return zero, err
	}
	return out, nil
}
