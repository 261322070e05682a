package bolt

// SkipSync stops s from fsyncing its commits, so that the conformance suite's
// thousands of small writes run at memory speed. Its semantics are unchanged
// unless the machine crashes. Tests only: a production store must not
// acknowledge a write before it is durable.
func SkipSync(s *Store) { s.db.NoSync = true }

// Sync undoes SkipSync: benchmarks seed without fsyncs, then measure with.
func Sync(s *Store) { s.db.NoSync = false }
