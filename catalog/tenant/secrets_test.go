package tenant

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseDatabase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want *Database
		errs []FieldError // reasons are substrings
	}{
		{
			name: "all known keys",
			in:   `{"engine":"postgres","host":"db.example.com","port":5432,"name":"acme","region":"eu-west-1","secret_ref":"vault:secret/acme"}`,
			want: &Database{Engine: "postgres", Host: "db.example.com", Port: 5432, Name: "acme", Region: "eu-west-1", SecretRef: "vault:secret/acme"},
		},
		{
			name: "some keys",
			in:   `{"engine":"mysql","port":3306}`,
			want: &Database{Engine: "mysql", Port: 3306},
		},
		{
			name: "empty object",
			in:   `{}`,
			want: &Database{},
		},
		{
			name: "password",
			in:   `{"engine":"postgres","password":"hunter2"}`,
			errs: []FieldError{{"database.password", "TCS never stores secrets; use database.secret_ref"}},
		},
		{
			name: "secret-like keys and unknown keys, sorted",
			in:   `{"zone":"a","db_password":"x","PWD":"x","apiKey":"x","token":"x","credentials":{},"private_key":"x","passwd":1}`,
			errs: []FieldError{
				{"database.PWD", "never stores secrets"},
				{"database.apiKey", "never stores secrets"},
				{"database.credentials", "never stores secrets"},
				{"database.db_password", "never stores secrets"},
				{"database.passwd", "never stores secrets"},
				{"database.private_key", "never stores secrets"},
				{"database.token", "never stores secrets"},
				{"database.zone", "unknown field"},
			},
		},
		{
			name: "unknown key",
			in:   `{"engine":"postgres","user":"admin"}`,
			errs: []FieldError{{"database.user", "unknown field"}},
		},
		{
			name: "key in other case is unknown",
			in:   `{"Engine":"postgres"}`,
			errs: []FieldError{{"database.Engine", "unknown field"}},
		},
		{
			name: "odd key quoted in the path",
			in:   `{"a.b":1}`,
			errs: []FieldError{{`database["a.b"]`, "unknown field"}},
		},
		{
			name: "wrong type",
			in:   `{"port":"5432"}`,
			errs: []FieldError{{"database.port", "must be a number"}},
		},
		{
			name: "wrong type string",
			in:   `{"host":5}`,
			errs: []FieldError{{"database.host", "must be a string"}},
		},
		{
			name: "not an object",
			in:   `"postgres://user:pass@host/db"`,
			errs: []FieldError{{"database", "must be an object"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := ParseDatabase([]byte(tt.in))
			if tt.errs != nil {
				assertFieldErrors(t, err, tt.errs)
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if diff := cmp.Diff(tt.want, d); diff != "" {
				t.Errorf("Unmarshal (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDatabaseMarshalRoundTrip(t *testing.T) {
	t.Parallel()
	want := validTenant()
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if !bytes.Contains(b, []byte(`"database":{"engine":"postgres","host":"db.internal.example","port":5432,"name":"acme_prod","region":"eu-west-1","secret_ref":"arn:`)) {
		t.Errorf("Marshal = %s, want the database object with its JSON names", b)
	}
	var got Tenant
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if diff := cmp.Diff(want, &got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	// A value (not pointer) Database marshals the same way.
	vb, err := json.Marshal(*want.Database)
	if err != nil {
		t.Fatalf("Marshal value: %v", err)
	}
	pb, _ := json.Marshal(want.Database)
	if !bytes.Equal(vb, pb) {
		t.Errorf("Marshal(value) = %s, Marshal(pointer) = %s", vb, pb)
	}
}

func TestSecretRef(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		ref    string
		reason string // empty: accepted
	}{
		{"secrets manager", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:acme-db-AbCdEf", ""},
		{"secrets manager china", "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:acme", ""},
		{"secrets manager govcloud", "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:acme", ""},
		{"ssm parameter", "arn:aws:ssm:us-east-1:123456789012:parameter/tcs/acme/db", ""},
		{"vault", "vault:secret/data/acme/db", ""},
		{"vault url", "vault://secret/data/acme/db", ""},
		{"a password", "hunter2", "must be a reference"},
		{"a connection string", "postgres://admin:hunter2@db/acme", "looks like a URL with a password"},
		{"whitespace", "vault:secret/acme db", "whitespace"},
		{"non-ascii", "vault:secret/acmé", "printable ASCII"},
		{"too long", "vault:" + strings.Repeat("a", MaxSecretRefLen), "at most 2048 bytes"},
		{"short arn", "arn:aws:secretsmanager:eu-west-1:secret", "must have the form"},
		{"not aws", "arn:gcp:secretsmanager:eu-west-1:123456789012:secret:x", "not an AWS partition"},
		{"other service", "arn:aws:s3:eu-west-1:123456789012:bucket/x", `service "s3"`},
		{"empty region", "arn:aws:ssm::123456789012:parameter/x", "region"},
		{"bad account", "arn:aws:ssm:eu-west-1:1234:parameter/x", "12-digit account"},
		{"secrets manager without name", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:", "secret:<name>"},
		{"ssm without parameter", "arn:aws:ssm:eu-west-1:123456789012:document/x", "parameter/<name>"},
		{"vault without path", "vault://", "must name a path"},
		{"vault slash only", "vault:/", "must name a path"},
		{"vault with token", "vault://secret/acme?token=s.abc", "without a query"},
		{"vault with user info", "vault://root:hunter2@vault/secret", "looks like a URL with a password"},
		{"vault with user only", "vault://root@vault/secret", "credentials"},
		{"vault token as the ref", "hvs.CAESIJlWh0E5SLlU2F2xkE0VUxjUU1FMHhJbnZ", "looks like a Vault service token"},
		{"vault token in a path", "vault:secret/data/hvs.CAESIJlWh0E5SLlU2F2xkE0VUxjUU1FMHhJbnZ", "looks like a Vault service token"},
		{"legacy vault token in a path", "vault://secret/s.Xk7c9vQwErTyUiOpAsDfGhJk", "looks like a Vault token"},
		{"legacy batch vault token", "vault:b.AAAAAQKnHw4uTy8wE7Ws7PfRnK9N/x", "looks like a Vault token"},
		{"aws access key id as a name", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:AKIAIOSFODNN7EXAMPLE", "looks like an AWS access key id"},
		{"aws secret key as a path", "vault:secret/wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "looks like a generated secret"},
		{"random name", "arn:aws:ssm:us-east-1:123456789012:parameter/x/Qm9Hc1x7TzR2pLk8Vw3Nf5Zy", "looks like a generated secret"},
		{"hex digest name", "vault:secret/3f786850e387550fdab836ed7e6dc881de23001b", "looks like a generated secret"},
		{"jwt", "vault:eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl", "looks like a JSON Web Token"},
		{"generated cdk name", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:MyApplicationDatabaseSecret3B817195-xYz123AbCdEf", ""},
		{"rds managed name", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-3f2a9c1e-58b4-4a70-9c3e-0d1f2a3b4c5d-AbCdEf", ""},
		{"vault kv path", "vault:secret/data/tenants/acme-corp/postgres-prod/primary", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tn := validTenant()
			tn.Database.SecretRef = tt.ref
			err := Prepare(tn)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Prepare: %v", err)
				}
				return
			}
			assertFieldErrors(t, err, []FieldError{{"database.secret_ref", tt.reason}})
		})
	}
}

func TestLooksLikeSecretKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key  string
		want bool
	}{
		{"password", true}, {"PASSWORD", true}, {"db_password", true}, {"dbPassword", true},
		{"passwd", true}, {"pwd", true}, {"secret", true}, {"client-secret", true},
		{"token", true}, {"auth_token", true}, {"api_key", true}, {"apikey", true}, {"API-Key", true},
		{"private_key", true}, {"private.key", true}, {"credential", true}, {"credentials", true},
		{"aws_secret_access_key", true}, {"access_key", true}, {"passphrase", true},
		{"connection_string", true},
		{"engine", false}, {"host", false}, {"tier", false}, {"owner", false},
		{"app.kubernetes.io/name", false}, {"region", false}, {"key", false}, {"public_key_id", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			t.Parallel()
			if got := looksLikeSecretKey(tt.key); got != tt.want {
				t.Errorf("looksLikeSecretKey(%q) = %v, want %v", tt.key, got, tt.want)
			}
		})
	}
}
