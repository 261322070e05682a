package tenant

// Bounds on a tenant document. They keep one tenant well under the 400 KB
// item limit of DynamoDB and the stream's record limit.
const (
	MaxHostnames     = 100
	MaxProducts      = 50
	MaxLabels        = 64
	MaxLabelKeyLen   = 63
	MaxLabelValueLen = 256
	MaxUsers         = 10_000_000
	MaxEditionLen    = 64
	MaxSecretRefLen  = 2048
	MaxRegionLen     = 32
)

// ValidateID checks a tenant id: [a-z0-9-]{3,63}. (stub: replaced by the rules work)
func ValidateID(id string) error { return nil }

// NormalizeHostname returns the canonical form of a hostname. (stub)
func NormalizeHostname(raw string) (string, error) { return raw, nil }

// Prepare normalises t in place and validates it. (stub)
func Prepare(t *Tenant) error {
	if t.Status == "" {
		t.Status = StatusActive
	}
	return nil
}
