package boltreplica

// SkipSync stops r from fsyncing its commits, so that benchmarks can seed
// thousands of tenants quickly. Its semantics are unchanged unless the
// machine crashes. Tests only: Apply must be durable when it returns.
func SkipSync(r *Replica) { r.db.NoSync = true }
