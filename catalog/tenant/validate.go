package tenant

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

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

// Bounds with no exported constant: they are fixed by the formats themselves.
const (
	minIDLen          = 3
	maxIDLen          = 63
	maxProductNameLen = 63
	maxEngineLen      = 32
	maxDBNameLen      = 63
)

// ValidateID checks a tenant id: 3 to 63 of a-z, 0-9 and '-', starting and
// ending with a letter or digit, so that it is safe as a DNS label, a
// partition key and a path segment alike. The error is an *Error (code
// Invalid, field "id").
func ValidateID(id string) error {
	if r := idReason(id); r != "" {
		return &Error{Code: Invalid, Message: "invalid tenant id", Fields: []FieldError{{Field: "id", Reason: r}}}
	}
	return nil
}

func idReason(id string) string {
	if id == "" {
		return "is required"
	}
	if n := utf8.RuneCountInString(id); n < minIDLen || n > maxIDLen {
		return fmt.Sprintf("must be %d to %d characters; got %d", minIDLen, maxIDLen, n)
	}
	if r := charsetReason(id, isLowerAlnumDashRune, "a-z, 0-9 and '-'"); r != "" {
		return r
	}
	if id[0] == '-' {
		return "must start with a letter or digit; found '-'"
	}
	if id[len(id)-1] == '-' {
		return "must end with a letter or digit; found '-'"
	}
	return ""
}

// Prepare normalises t in place and validates the whole document. Hostnames
// and the database host are put in canonical form, an empty status becomes
// ACTIVE and an empty product state becomes ACTIVE. Every rule is checked,
// not just until the first failure, so that a caller can fix a document in
// one round trip: the error is an *Error (code Invalid) listing each field at
// fault by its JSON path ("hostnames[2]", "products.jira.users"), in document
// order with map keys sorted.
//
// Preparing a tenant that Prepare accepted changes nothing.
func Prepare(t *Tenant) error {
	if t == nil {
		return &Error{Code: Invalid, Message: "tenant is required"}
	}
	var v validator
	v.check("id", idReason(t.ID))
	prepareHostnames(&v, t)
	prepareStatus(&v, t)
	prepareProducts(&v, t)
	if t.Database != nil {
		prepareDatabase(&v, t.Database)
	}
	if t.Migration != nil {
		prepareMigration(&v, t.Migration)
	}
	v.check("region", regionReason(t.Region))
	checkLabels(&v, t.Labels)
	return FieldErrors(v.fields)
}

// validator collects field errors.
type validator struct{ fields []FieldError }

// check records reason against field, unless reason is empty (no fault).
func (v *validator) check(field, reason string) {
	if reason != "" {
		v.fields = append(v.fields, FieldError{Field: field, Reason: reason})
	}
}

func prepareHostnames(v *validator, t *Tenant) {
	switch n := len(t.Hostnames); {
	case n == 0:
		v.check("hostnames", "at least one hostname is required")
	case n > MaxHostnames:
		v.check("hostnames", fmt.Sprintf("at most %d hostnames are allowed; got %d", MaxHostnames, n))
	}
	// Duplicates are found after normalisation: "Example.com" and
	// "example.com." are one hostname, and two claims on it from one tenant
	// would confuse the claim bookkeeping.
	first := make(map[string]int, len(t.Hostnames))
	for i, raw := range t.Hostnames {
		field := "hostnames[" + strconv.Itoa(i) + "]"
		h, reason := normalizeHostname(raw, true)
		if reason != "" {
			v.check(field, reason)
			continue
		}
		t.Hostnames[i] = h
		if j, dup := first[h]; dup {
			v.check(field, fmt.Sprintf("duplicate of hostnames[%d] (%q)", j, h))
			continue
		}
		first[h] = i
	}
}

func prepareStatus(v *validator, t *Tenant) {
	switch t.Status {
	case "":
		t.Status = StatusActive
	case StatusActive, StatusSuspended:
	case StatusDeleted:
		v.check("status", "set by DELETE only")
	default:
		v.check("status", fmt.Sprintf("must be %s or %s; got %q", StatusActive, StatusSuspended, t.Status))
	}
}

func prepareProducts(v *validator, t *Tenant) {
	if n := len(t.Products); n > MaxProducts {
		v.check("products", fmt.Sprintf("at most %d products are allowed; got %d", MaxProducts, n))
	}
	for _, name := range slices.Sorted(maps.Keys(t.Products)) {
		p := t.Products[name]
		field := fieldPath("products", name)
		if r := productNameReason(name); r != "" {
			v.check(field, r)
		}
		switch p.State {
		case "":
			p.State = ProductActive
			t.Products[name] = p
		case ProductActive, ProductDeactivated:
		default:
			v.check(field+".state", fmt.Sprintf("must be %s or %s; got %q", ProductActive, ProductDeactivated, p.State))
		}
		if p.Users < 0 || p.Users > MaxUsers {
			v.check(field+".users", fmt.Sprintf("must be between 0 and %d; got %d", MaxUsers, p.Users))
		}
		v.check(field+".edition", printableReason(p.Edition, MaxEditionLen))
	}
}

func productNameReason(name string) string {
	if name == "" || len(name) > maxProductNameLen {
		return fmt.Sprintf("product name must be 1 to %d characters; got %d", maxProductNameLen, len(name))
	}
	if r := charsetReason(name, isLowerAlnumDashRune, "a-z, 0-9 and '-'"); r != "" {
		return "product name " + r
	}
	return ""
}

func prepareDatabase(v *validator, d *Database) { prepareDatabaseAt(v, "database", d) }

// prepareDatabaseAt is prepareDatabase naming the fields under prefix.
func prepareDatabaseAt(v *validator, prefix string, d *Database) {
	switch {
	case d.Engine == "":
		v.check(prefix+".engine", "is required")
	case len(d.Engine) > maxEngineLen:
		v.check(prefix+".engine", fmt.Sprintf("must be at most %d characters; got %d", maxEngineLen, len(d.Engine)))
	default:
		v.check(prefix+".engine", charsetReason(d.Engine, isLowerAlnumDashRune, "a-z, 0-9 and '-'"))
	}

	if h, reason := normalizeDatabaseHost(d.Host); reason != "" {
		v.check(prefix+".host", reason)
	} else {
		d.Host = h
	}

	if d.Port < 1 || d.Port > 65535 {
		v.check(prefix+".port", fmt.Sprintf("must be between 1 and 65535; got %d", d.Port))
	}

	switch {
	case d.Name == "":
		v.check(prefix+".name", "is required")
	case len(d.Name) > maxDBNameLen:
		v.check(prefix+".name", fmt.Sprintf("must be at most %d characters; got %d", maxDBNameLen, len(d.Name)))
	default:
		v.check(prefix+".name", charsetReason(d.Name, isDBNameRune, "A-Z, a-z, 0-9, '_' and '-'"))
	}

	v.check(prefix+".region", regionReason(d.Region))
	if d.SecretRef != "" {
		v.check(prefix+".secret_ref", secretRefReason(d.SecretRef))
	}
}

// ValidateRegion checks a region name that is required, such as the target
// of a resync: 1 to MaxRegionLen of a-z, 0-9 and '-', starting and ending
// with a letter or digit ("eu-west-1"). The error is an *Error (code
// Invalid, field "region").
func ValidateRegion(region string) error {
	r := regionReason(region)
	switch {
	case r != "":
	case region == "":
		r = "is required"
	case region[0] == '-':
		r = "must start with a letter or digit; found '-'"
	case region[len(region)-1] == '-':
		r = "must end with a letter or digit; found '-'"
	}
	if r != "" {
		return &Error{Code: Invalid, Message: "invalid region", Fields: []FieldError{{Field: "region", Reason: r}}}
	}
	return nil
}

// regionReason checks an optional AWS-style region name ("eu-west-1").
func regionReason(region string) string {
	if len(region) > MaxRegionLen {
		return fmt.Sprintf("must be at most %d characters; got %d", MaxRegionLen, len(region))
	}
	return charsetReason(region, isLowerAlnumDashRune, "a-z, 0-9 and '-'")
}

func checkLabels(v *validator, labels map[string]string) {
	if n := len(labels); n > MaxLabels {
		v.check("labels", fmt.Sprintf("at most %d labels are allowed; got %d", MaxLabels, n))
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		field := fieldPath("labels", k)
		charset := charsetReason(k, isLabelKeyRune, "A-Z, a-z, 0-9, '.', '_', '/' and '-'")
		switch {
		case k == "" || len(k) > MaxLabelKeyLen:
			v.check(field, fmt.Sprintf("key must be 1 to %d characters; got %d", MaxLabelKeyLen, len(k)))
		case charset != "":
			v.check(field, "key "+charset)
		case looksLikeSecretKey(k):
			// Labels are served to every compute node and logged freely; a
			// secret put here would leak everywhere.
			v.check(field, reasonNoSecrets)
		default:
			v.check(field, labelValueReason(k, labels[k]))
		}
	}
}

// labelValueReason checks a label's value: printable, bounded, and not a
// credential. Labels are served to every compute node and logged freely.
// A value that only looks random is accepted under a key starting with
// OpaqueLabelPrefix; one shaped like a known credential never is.
func labelValueReason(key, value string) string {
	if r := printableReason(value, MaxLabelValueLen); r != "" {
		return r
	}
	opaque := strings.HasPrefix(key, OpaqueLabelPrefix)
	r := secretValueReason(value, !opaque)
	if r != "" && secretShape(value) == "" {
		r += fmt.Sprintf("; if it is not a secret (a commit hash, a checksum, a generated id), put it under a label key starting with %q", OpaqueLabelPrefix)
	}
	return r
}

// printableReason checks a free-text value: at most max bytes of valid UTF-8,
// printable (no control or formatting characters that would corrupt logs or
// terminals). Empty is fine.
func printableReason(s string, max int) string {
	if len(s) > max {
		return fmt.Sprintf("must be at most %d bytes; got %d", max, len(s))
	}
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	for i, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Sprintf("must be printable; found %q at %d", r, i)
		}
	}
	return ""
}

// charsetReason says which character of s, if any, is outside the set that ok
// accepts; set describes that set to a person.
func charsetReason(s string, ok func(rune) bool, set string) string {
	for i, r := range s {
		if !ok(r) {
			return fmt.Sprintf("must contain only %s; found %q at %d", set, r, i)
		}
	}
	return ""
}

func isLowerAlnumDashRune(r rune) bool {
	return 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-'
}

func isLowerAlnumDash(s string) bool { return charsetReason(s, isLowerAlnumDashRune, "") == "" }

func isDBNameRune(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '-'
}

func isLabelKeyRune(r rune) bool {
	return isDBNameRune(r) || r == '.' || r == '/'
}

// fieldPath names a map entry as a JSON path: "products.jira" when the key
// is a plain word, `labels["app.kubernetes.io/name"]` when it has characters
// that would make the dotted form ambiguous (or unprintable in a log line).
func fieldPath(prefix, key string) string {
	if key != "" && charsetReason(key, isDBNameRune, "") == "" {
		return prefix + "." + key
	}
	return prefix + "[" + strconv.Quote(key) + "]"
}
