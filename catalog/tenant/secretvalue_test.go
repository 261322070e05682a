package tenant

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestLabelValueSecrets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, key, value string
		reason           string // empty: accepted
	}{
		{"plain", "tier", "gold", ""},
		{"uuid", "request", "123e4567-e89b-12d3-a456-426614174000", ""},
		{"hostname", "node", "ip-10-0-12-34.eu-west-1.compute.internal", ""},
		{"image", "image", "registry.example.com/team/service:v1.2.3", ""},
		{"camel case with digits", "service", "MyServiceDeploymentV2", ""},
		{"timestamp", "since", "2026-01-02T03:04:05Z", ""},
		{"words", "owner", "customerSuccessManagerJaneDoe2024", ""},
		{"slug", "cluster", "postgres-prod-eu-west-1-primary-replica-0042", ""},
		{"sentence", "note", "Migrated from the EU cluster on 2 January; ask Jane (payments) before moving it again.", ""},
		{"short random", "ref", "Xk7c9vQwErT", ""},

		{"vault token", "vault", "hvs.CAESIJlWh0E5SLlU2F2xkE0VUxjUU1FMHhJbnZ", "looks like a Vault service token"},
		{"vault batch token", "v", "hvb.AAAAAQKnHw4uTy8wE7Ws7PfRnK9N", "looks like a Vault batch token"},
		{"legacy vault token", "v", "s.Xk7c9vQwErTyUiOpAsDfGhJk", "looks like a Vault token"},
		{"aws access key id", "aws", "AKIAIOSFODNN7EXAMPLE", "looks like an AWS access key id"},
		{"aws temporary key id in text", "aws", "key=ASIAY34FZKBOKMUTVV7A here", "looks like an AWS access key id"},
		{"aws secret key", "aws", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "looks like a generated secret"},
		{"pem header", "cert", "-----BEGIN OPENSSH PRIVATE KEY-----", "looks like a private key"},
		{"github token", "ci", "ghp_" + strings.Repeat("a1B2", 9), "looks like a GitHub token"},
		{"url with password", "dsn", "postgres://admin:hunter2@db.internal:5432/acme", "looks like a URL with a password"},
		{"jwt", "session", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl", "looks like a JSON Web Token"},
		{"random base64", "blob", "Qm9Hc1x7TzR2pLk8Vw3Nf5Zy", "looks like a generated secret"},
		{"git sha", "git-sha", "da39a3ee5e6b4b0d3255bfef95601890afd80709", `put it under a label key starting with "opaque/"`},

		// The escape: random-looking values under opaque/ keys; known
		// credential shapes are refused there too.
		{"opaque git sha", "opaque/git-sha", "da39a3ee5e6b4b0d3255bfef95601890afd80709", ""},
		{"opaque random", "opaque/build-id", "Qm9Hc1x7TzR2pLk8Vw3Nf5Zy", ""},
		{"opaque vault token", "opaque/x", "hvs.CAESIJlWh0E5SLlU2F2xkE0VUxjUU1FMHhJbnZ", "looks like a Vault service token"},
		{"opaque aws key id", "opaque/x", "AKIAIOSFODNN7EXAMPLE", "looks like an AWS access key id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tn := validTenant()
			tn.Labels = map[string]string{tt.key: tt.value}
			err := Prepare(tn)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Prepare: %v", err)
				}
				return
			}
			assertFieldErrors(t, err, []FieldError{{fieldPath("labels", tt.key), tt.reason}})
			if strings.Contains(err.Error(), tt.value) {
				t.Errorf("error repeats the secret: %v", err)
			}
			if secretShape(tt.value) != "" && strings.Contains(err.Error(), "put it under") {
				t.Errorf("error offers the opaque/ escape for a known credential shape: %v", err)
			}
		})
	}
}

// TestHighEntropyCalibration checks the high-entropy heuristic against
// generated secrets (it must catch nearly all) and ordinary values (it must
// catch none).
func TestHighEntropyCalibration(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(alphabet string, n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	const (
		base62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
		base64 = base62 + "+/"
		hex    = "0123456789abcdef"
		lower  = "abcdefghijklmnopqrstuvwxyz0123456789"
	)
	for _, c := range []struct {
		alphabet string
		lengths  []int
		minRate  float64
	}{
		// Short strings are harder to tell from identifiers: a random
		// 20-character base62 string has no digit 3% of the time, and is
		// nearly all one case 3% of the time.
		{base62, []int{20}, 0.90},
		{base62, []int{24, 32, 40, 64}, 0.95},
		{base64, []int{24, 40, 64}, 0.95},
		{hex, []int{32, 40, 64}, 0.98},
		{lower, []int{32, 40, 64}, 0.98},
	} {
		for _, n := range c.lengths {
			const samples = 2000
			caught := 0
			for range samples {
				if _, _, ok := highEntropy(random(c.alphabet, n)); ok {
					caught++
				}
			}
			if rate := float64(caught) / samples; rate < c.minRate {
				t.Errorf("alphabet %.10q… length %d: caught %.3f of random strings, want ≥ %.2f", c.alphabet, n, rate, c.minRate)
			}
		}
	}
	ordinary := []string{
		"MyApplicationDatabaseSecret3B817195", "DatabaseSecret3B817195", "customerSuccessManagerJaneDoe2024",
		"secret/data/tenants/acme-corp/postgres-prod", "kubernetes.io/cluster/prod-eu-west-1",
		"123e4567-e89b-12d3-a456-426614174000", "registry.example.com/team/service:v1.2.3",
		"arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/acme/db-AbCdEf",
		"The quick brown fox jumps over the lazy dog 1234567890 times",
		"ThisIsAVeryLongCamelCaseIdentifierWithNumbers12345", "UPPER_CASE_CONSTANT_NAME_WITH_2_DIGITS",
		"billing-account-0042", "2026-01-02T03:04:05.123456789Z", "eu-west-1a,eu-west-1b,eu-west-1c",
	}
	for _, v := range ordinary {
		if n, bits, ok := highEntropy(v); ok {
			t.Errorf("highEntropy(%q) = %d characters at %.2f bits: an ordinary value flagged", v, n, bits)
		}
	}
}
