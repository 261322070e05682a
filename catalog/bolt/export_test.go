package bolt

import "go.etcd.io/bbolt"

// SkipSync stops s from fsyncing its commits, so that the conformance suite's
// thousands of small writes run at memory speed. Its semantics are unchanged
// unless the machine crashes. Tests only: a production store must not
// acknowledge a write before it is durable.
func SkipSync(s *Store) { s.db.NoSync = true }

// Sync undoes SkipSync: benchmarks seed without fsyncs, then measure with.
func Sync(s *Store) { s.db.NoSync = false }

// TamperAudit replaces the stored audit record of chain at version by raw,
// or deletes it when raw is nil, behind the store's back (tamper tests).
func TamperAudit(s *Store, chain string, version int64, raw []byte) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		if raw == nil {
			return tx.Bucket(bucketAudit).Delete(auditKey(chain, version))
		}
		return tx.Bucket(bucketAudit).Put(auditKey(chain, version), raw)
	})
}

// ForgetAuditHead deletes the chain head of chain (tamper tests).
func ForgetAuditHead(s *Store, chain string) error {
	return s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketHeads).Delete([]byte(chain)) })
}
