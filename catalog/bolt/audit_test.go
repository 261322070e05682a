package bolt_test

import (
	"path/filepath"
	"testing"

	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/storetest"
)

// tamperStore lets the tamper suite edit the bbolt file's audit records.
type tamperStore struct{ *bolt.Store }

func (s tamperStore) PutAuditRaw(t testing.TB, chain string, version int64, raw []byte) {
	t.Helper()
	if err := bolt.TamperAudit(s.Store, chain, version, raw); err != nil {
		t.Fatalf("tamper with audit record %s/%d: %v", chain, version, err)
	}
}

func (s tamperStore) DeleteAudit(t testing.TB, chain string, version int64) {
	t.Helper()
	if err := bolt.TamperAudit(s.Store, chain, version, nil); err != nil {
		t.Fatalf("delete audit record %s/%d: %v", chain, version, err)
	}
}

func (s tamperStore) ForgetAuditHead(t testing.TB, chain string) {
	t.Helper()
	if err := bolt.ForgetAuditHead(s.Store, chain); err != nil {
		t.Fatalf("forget audit head of %s: %v", chain, err)
	}
}

func TestAuditTamper(t *testing.T) {
	t.Parallel()
	storetest.RunTamper(t, func(t *testing.T) storetest.TamperStore {
		s := open(t, filepath.Join(t.TempDir(), "catalog.db"), bolt.Options{})
		bolt.SkipSync(s)
		return tamperStore{s}
	})
}
