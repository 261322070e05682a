package tenant

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidateID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		id     string
		reason string // empty: accepted
	}{
		{"shortest", "abc", ""},
		{"longest", strings.Repeat("a", 63), ""},
		{"digits and hyphens", "a-1-b", ""},
		{"all digits", "123", ""},
		{"empty", "", "is required"},
		{"too short", "ab", "must be 3 to 63 characters; got 2"},
		{"too long", strings.Repeat("a", 64), "must be 3 to 63 characters; got 64"},
		{"upper case", "Acme", "must contain only a-z, 0-9 and '-'; found 'A' at 0"},
		{"underscore", "ac_me", "found '_' at 2"},
		{"dot", "ac.me", "found '.' at 2"},
		{"space", "ac me", "found ' ' at 2"},
		{"unicode", "acmé", "found 'é' at 3"},
		{"leading hyphen", "-acme", "must start with a letter or digit"},
		{"trailing hyphen", "acme-", "must end with a letter or digit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ValidateID(tt.id)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("ValidateID(%q) = %v, want nil", tt.id, err)
				}
				return
			}
			assertFieldErrors(t, err, []FieldError{{Field: "id", Reason: tt.reason}})
		})
	}
}

// validTenant returns a tenant that Prepare accepts unchanged.
func validTenant() *Tenant {
	return &Tenant{
		ID:        "acme",
		Hostnames: []string{"acme.example.com", "xn--bcher-kva.de"},
		Status:    StatusActive,
		Products: map[string]Product{
			"jira":       {State: ProductActive, Users: 25, Edition: "premium"},
			"confluence": {State: ProductDeactivated, Users: 0},
		},
		Database: &Database{
			Engine:    "postgres",
			Host:      "db.internal.example",
			Port:      5432,
			Name:      "acme_prod",
			Region:    "eu-west-1",
			SecretRef: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:acme-db-AbCdEf",
		},
		Region: "eu-west-1",
		Labels: map[string]string{"tier": "gold", "app.kubernetes.io/name": "acme"},
	}
}

func TestPrepareAcceptsValid(t *testing.T) {
	t.Parallel()
	got := validTenant()
	if err := Prepare(got); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if diff := cmp.Diff(validTenant(), got); diff != "" {
		t.Errorf("Prepare changed a valid tenant (-want +got):\n%s", diff)
	}
}

func TestPrepareNormalises(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*Tenant)
		want   func(*Tenant)
	}{
		{
			"hostnames normalised in place",
			func(t *Tenant) { t.Hostnames = []string{"ACME.Example.com.", "Bücher.de:443"} },
			func(t *Tenant) { t.Hostnames = []string{"acme.example.com", "xn--bcher-kva.de"} },
		},
		{
			"empty status defaults to ACTIVE",
			func(t *Tenant) { t.Status = "" },
			func(t *Tenant) { t.Status = StatusActive },
		},
		{
			"SUSPENDED kept",
			func(t *Tenant) { t.Status = StatusSuspended },
			func(t *Tenant) { t.Status = StatusSuspended },
		},
		{
			"empty product state defaults to ACTIVE",
			func(t *Tenant) { t.Products["bitbucket"] = Product{Users: 3} },
			func(t *Tenant) { t.Products["bitbucket"] = Product{State: ProductActive, Users: 3} },
		},
		{
			"database host normalised",
			func(t *Tenant) { t.Database.Host = "DB.Internal.Example." },
			func(t *Tenant) {},
		},
		{
			"database host IPv4",
			func(t *Tenant) { t.Database.Host = "10.0.0.7" },
			func(t *Tenant) { t.Database.Host = "10.0.0.7" },
		},
		{
			"database host IPv6 canonicalised",
			func(t *Tenant) { t.Database.Host = "2001:DB8:0:0::1" },
			func(t *Tenant) { t.Database.Host = "2001:db8::1" },
		},
		{
			"database host IPv4-mapped IPv6 unmapped",
			func(t *Tenant) { t.Database.Host = "::ffff:10.0.0.7" },
			func(t *Tenant) { t.Database.Host = "10.0.0.7" },
		},
		{
			"no database",
			func(t *Tenant) { t.Database = nil },
			func(t *Tenant) { t.Database = nil },
		},
		{
			"optional fields empty",
			func(t *Tenant) {
				t.Products, t.Labels, t.Region = nil, nil, ""
				t.Database.Region, t.Database.SecretRef = "", ""
			},
			func(t *Tenant) {
				t.Products, t.Labels, t.Region = nil, nil, ""
				t.Database.Region, t.Database.SecretRef = "", ""
			},
		},
		{
			"limits reached exactly",
			func(t *Tenant) { fillToLimits(t, 0) },
			func(t *Tenant) { fillToLimits(t, 0) },
		},
		{
			"empty label value",
			func(t *Tenant) { t.Labels["empty"] = "" },
			func(t *Tenant) { t.Labels["empty"] = "" },
		},
		{
			"unicode label value",
			func(t *Tenant) { t.Labels["owner"] = "Zoë Ŧeam" },
			func(t *Tenant) { t.Labels["owner"] = "Zoë Ŧeam" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, want := validTenant(), validTenant()
			tt.mutate(got)
			tt.want(want)
			if err := Prepare(got); err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Prepare (-want +got):\n%s", diff)
			}
			again := got.Clone()
			if err := Prepare(again); err != nil {
				t.Fatalf("second Prepare: %v", err)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("second Prepare changed the tenant (-first +second):\n%s", diff)
			}
		})
	}
}

// fillToLimits gives t as many hostnames, products and labels as allowed,
// plus extra of each.
func fillToLimits(t *Tenant, extra int) {
	t.Hostnames = nil
	for i := range MaxHostnames + extra {
		t.Hostnames = append(t.Hostnames, fmt.Sprintf("h%d.example.com", i))
	}
	t.Products = map[string]Product{}
	for i := range MaxProducts + extra {
		t.Products[fmt.Sprintf("p%d", i)] = Product{State: ProductActive, Users: MaxUsers, Edition: strings.Repeat("e", MaxEditionLen)}
	}
	t.Labels = map[string]string{}
	for i := range MaxLabels + extra {
		t.Labels[fmt.Sprintf("k%d", i)] = strings.Repeat("v", MaxLabelValueLen)
	}
}

func TestPrepareRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*Tenant)
		want   []FieldError // reasons are substrings
	}{
		// id
		{"bad id", func(t *Tenant) { t.ID = "AB" }, []FieldError{{"id", "must be 3 to 63 characters; got 2"}}},
		{"missing id", func(t *Tenant) { t.ID = "" }, []FieldError{{"id", "is required"}}},

		// hostnames
		{"no hostnames", func(t *Tenant) { t.Hostnames = nil }, []FieldError{{"hostnames", "at least one"}}},
		{"too many hostnames", func(t *Tenant) { fillToLimits(t, 1) }, []FieldError{
			{"hostnames", "at most 100 hostnames are allowed; got 101"},
			{"products", "at most 50 products are allowed; got 51"},
			{"labels", "at most 64 labels are allowed; got 65"},
		}},
		{"bad hostname", func(t *Tenant) { t.Hostnames = []string{"ok.example.com", "a_b.example.com", "*.example.com"} }, []FieldError{
			{"hostnames[1]", `label "a_b" contains '_'`},
			{"hostnames[2]", "wildcard"},
		}},
		{"ip hostname", func(t *Tenant) { t.Hostnames = []string{"192.0.2.1"} }, []FieldError{{"hostnames[0]", "IP addresses are not hostnames"}}},
		{"duplicate after normalisation", func(t *Tenant) {
			t.Hostnames = []string{"a.example.com", "b.example.com", "A.Example.com.", "b.example.com:443"}
		}, []FieldError{
			{"hostnames[2]", `duplicate of hostnames[0] ("a.example.com")`},
			{"hostnames[3]", `duplicate of hostnames[1] ("b.example.com")`},
		}},
		{"duplicate unicode and punycode", func(t *Tenant) { t.Hostnames = []string{"bücher.de", "xn--bcher-kva.de"} }, []FieldError{
			{"hostnames[1]", "duplicate of hostnames[0]"},
		}},

		// status
		{"deleted status", func(t *Tenant) { t.Status = StatusDeleted }, []FieldError{{"status", "set by DELETE only"}}},
		{"unknown status", func(t *Tenant) { t.Status = "active" }, []FieldError{{"status", `must be ACTIVE or SUSPENDED; got "active"`}}},

		// products
		{"bad product name", func(t *Tenant) { t.Products["Jira"] = Product{} }, []FieldError{{"products.Jira", "found 'J' at 0"}}},
		{"empty product name", func(t *Tenant) { t.Products[""] = Product{} }, []FieldError{{`products[""]`, "1 to 63"}}},
		{"long product name", func(t *Tenant) { t.Products[strings.Repeat("p", 64)] = Product{} }, []FieldError{{"products." + strings.Repeat("p", 64), "1 to 63"}}},
		{"dotted product name", func(t *Tenant) { t.Products["a.b"] = Product{} }, []FieldError{{`products["a.b"]`, "found '.' at 1"}}},
		{"bad product state", func(t *Tenant) { t.Products["jira"] = Product{State: "ON"} }, []FieldError{{"products.jira.state", "must be ACTIVE or DEACTIVATED"}}},
		{"negative users", func(t *Tenant) { t.Products["jira"] = Product{Users: -1} }, []FieldError{{"products.jira.users", "got -1"}}},
		{"too many users", func(t *Tenant) { t.Products["jira"] = Product{Users: MaxUsers + 1} }, []FieldError{{"products.jira.users", "between 0 and 10000000"}}},
		{"long edition", func(t *Tenant) { t.Products["jira"] = Product{Edition: strings.Repeat("e", 65)} }, []FieldError{{"products.jira.edition", "at most 64 bytes"}}},
		{"unprintable edition", func(t *Tenant) { t.Products["jira"] = Product{Edition: "pre\x1bmium"} }, []FieldError{{"products.jira.edition", "printable"}}},
		{"product errors sorted", func(t *Tenant) {
			t.Products["zz"] = Product{Users: -1}
			t.Products["aa"] = Product{State: "X", Users: -1}
		}, []FieldError{
			{"products.aa.state", ""}, {"products.aa.users", ""}, {"products.zz.users", ""},
		}},

		// database
		{"empty database", func(t *Tenant) { t.Database = &Database{} }, []FieldError{
			{"database.engine", "is required"},
			{"database.host", "is required"},
			{"database.port", "got 0"},
			{"database.name", "is required"},
		}},
		{"bad engine", func(t *Tenant) { t.Database.Engine = "Postgres" }, []FieldError{{"database.engine", "found 'P'"}}},
		{"long engine", func(t *Tenant) { t.Database.Engine = strings.Repeat("e", 33) }, []FieldError{{"database.engine", "at most 32"}}},
		{"host with port", func(t *Tenant) { t.Database.Host = "db.example.com:5432" }, []FieldError{{"database.host", "use database.port"}}},
		{"host ip with port", func(t *Tenant) { t.Database.Host = "10.0.0.1:5432" }, []FieldError{{"database.host", "use database.port"}}},
		{"host bracketed ipv6", func(t *Tenant) { t.Database.Host = "[2001:db8::1]" }, []FieldError{{"database.host", "without brackets"}}},
		{"host bad ipv4", func(t *Tenant) { t.Database.Host = "10.0.0.256" }, []FieldError{{"database.host", "not a valid IP address"}}},
		{"host short ipv4", func(t *Tenant) { t.Database.Host = "10.1" }, []FieldError{{"database.host", "not a valid IP address"}}},
		{"host ipv6 zone", func(t *Tenant) { t.Database.Host = "fe80::1%eth0" }, []FieldError{{"database.host", "zone"}}},
		{"host underscore", func(t *Tenant) { t.Database.Host = "db_1.example.com" }, []FieldError{{"database.host", `label "db_1" contains '_'`}}},
		{"port zero", func(t *Tenant) { t.Database.Port = 0 }, []FieldError{{"database.port", "between 1 and 65535"}}},
		{"port too high", func(t *Tenant) { t.Database.Port = 65536 }, []FieldError{{"database.port", "got 65536"}}},
		{"bad db name", func(t *Tenant) { t.Database.Name = "acme prod" }, []FieldError{{"database.name", "found ' ' at 4"}}},
		{"long db name", func(t *Tenant) { t.Database.Name = strings.Repeat("n", 64) }, []FieldError{{"database.name", "at most 63"}}},
		{"bad db region", func(t *Tenant) { t.Database.Region = "EU_WEST" }, []FieldError{{"database.region", "found 'E'"}}},
		{"long db region", func(t *Tenant) { t.Database.Region = strings.Repeat("r", 33) }, []FieldError{{"database.region", "at most 32"}}},
		{"password as secret_ref", func(t *Tenant) { t.Database.SecretRef = "hunter2" }, []FieldError{{"database.secret_ref", "must be a reference"}}},

		// region
		{"bad region", func(t *Tenant) { t.Region = "eu west" }, []FieldError{{"region", "found ' '"}}},
		{"long region", func(t *Tenant) { t.Region = strings.Repeat("r", 33) }, []FieldError{{"region", "at most 32"}}},

		// labels
		{"empty label key", func(t *Tenant) { t.Labels[""] = "x" }, []FieldError{{`labels[""]`, "key must be 1 to 63"}}},
		{"long label key", func(t *Tenant) { t.Labels[strings.Repeat("k", 64)] = "x" }, []FieldError{{"labels." + strings.Repeat("k", 64), "key must be 1 to 63"}}},
		{"bad label key", func(t *Tenant) { t.Labels["a b"] = "x" }, []FieldError{{`labels["a b"]`, "key must contain only"}}},
		{"long label value", func(t *Tenant) { t.Labels["tier"] = strings.Repeat("v", 257) }, []FieldError{{"labels.tier", "at most 256 bytes"}}},
		{"unprintable label value", func(t *Tenant) { t.Labels["tier"] = "gold\n" }, []FieldError{{"labels.tier", `found '\n' at 4`}}},
		{"invalid utf-8 label value", func(t *Tenant) { t.Labels["tier"] = "\xff" }, []FieldError{{"labels.tier", "UTF-8"}}},
		{"secret label", func(t *Tenant) { t.Labels["db_password"] = "hunter2" }, []FieldError{{"labels.db_password", "TCS never stores secrets; use database.secret_ref"}}},
		{"secret label mixed case", func(t *Tenant) { t.Labels["Api-Key"] = "x" }, []FieldError{{"labels.Api-Key", "never stores secrets"}}},
		{"secret label dotted", func(t *Tenant) { t.Labels["vault.token"] = "x" }, []FieldError{{`labels["vault.token"]`, "never stores secrets"}}},

		// everything at once, in document order
		{"all errors collected", func(t *Tenant) {
			t.ID = "-x"
			t.Hostnames = []string{"ok.example.com", "bad_host", "OK.example.com"}
			t.Status = StatusDeleted
			t.Products["jira"] = Product{State: "ON", Users: -5}
			t.Database.Port = -1
			t.Database.SecretRef = "password=hunter2"
			t.Region = "Mars"
			t.Labels["password"] = "hunter2"
		}, []FieldError{
			{"id", "must be 3 to 63"},
			{"hostnames[1]", `label "bad_host" contains '_'`},
			{"hostnames[2]", "duplicate of hostnames[0]"},
			{"status", "set by DELETE only"},
			{"products.jira.state", ""},
			{"products.jira.users", ""},
			{"database.port", ""},
			{"database.secret_ref", "must be a reference"},
			{"region", "found 'M'"},
			{"labels.password", "never stores secrets"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tn := validTenant()
			tt.mutate(tn)
			assertFieldErrors(t, Prepare(tn), tt.want)
		})
	}
}

func TestPrepareNil(t *testing.T) {
	t.Parallel()
	if got := ErrorCode(Prepare(nil)); got != Invalid {
		t.Errorf("Prepare(nil) code = %q, want %q", got, Invalid)
	}
}

// TestPrepareMigration: a migration's step must be known, its databases
// valid (fields named under migration.from and migration.to), and
// read_only is set from the step whatever was sent.
func TestPrepareMigration(t *testing.T) {
	t.Parallel()
	db := Database{Engine: "postgres", Host: "DB-1.Internal", Port: 5432, Name: "acme"}
	good := func(step MoveStep, readOnly bool) *Tenant {
		return &Tenant{ID: "acme", Hostnames: []string{"acme.example.com"}, Database: &Database{Engine: "postgres", Host: "db-1.internal", Port: 5432, Name: "acme"},
			Migration: &Migration{Step: step, ReadOnly: readOnly, From: db, To: Database{Engine: "postgres", Host: "db-2.internal", Port: 5432, Name: "acme"}}}
	}
	for step, want := range map[MoveStep]bool{MovePrepared: true, MoveCopied: true, MoveSwitched: false, MoveComplete: false, MoveCancelled: false, MoveReversed: false} {
		x := good(step, !want)
		if err := Prepare(x); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if x.Migration.ReadOnly != want || x.ReadOnly() != want || x.Moving() != step.Active() {
			t.Errorf("%s: read_only %v, ReadOnly() %v, Moving() %v; want read-only %v", step, x.Migration.ReadOnly, x.ReadOnly(), x.Moving(), want)
		}
		if x.Migration.From.Host != "db-1.internal" {
			t.Errorf("migration.from.host not normalised: %q", x.Migration.From.Host)
		}
	}
	bad := good("MOVING", false)
	bad.Migration.To.Port = 0
	bad.Migration.From.SecretRef = "hunter2-password-value"
	err := Prepare(bad)
	var fields []string
	for _, f := range ErrorFields(err) {
		fields = append(fields, f.Field)
	}
	if want := "migration.step migration.from.secret_ref migration.to.port"; strings.Join(fields, " ") != want {
		t.Errorf("fields at fault %q, want %q (%v)", strings.Join(fields, " "), want, err)
	}
}
