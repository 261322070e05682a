package tenant

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"
)

// reasonNoSecrets is the reason given for anything that looks like a secret
// in a tenant document.
// ReasonUnknownField is the reason given for a key a document may not have.
const ReasonUnknownField = "unknown field"

const reasonNoSecrets = "TCS never stores secrets; use database.secret_ref"

// secretWords are the fragments that make a key look like it holds a secret.
// They are matched as substrings of the key lower-cased with its separators
// removed, so "db_password", "API-Key" and "private.key" are all caught. A
// few innocent keys will be caught too ("tokenizer"); that is the price of
// never letting a password through under a slightly different name.
var secretWords = []string{
	"password", "passwd", "passphrase", "pwd",
	"secret", "token", "credential",
	"apikey", "privatekey", "accesskey",
	"connectionstring",
}

// looksLikeSecretKey reports whether a JSON or label key names a secret.
func looksLikeSecretKey(key string) bool {
	k := strings.Map(func(r rune) rune {
		switch r {
		case '_', '-', '.', '/', ' ':
			return -1
		}
		return unicode.ToLower(r)
	}, key)
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// databaseKeys are the JSON keys a database object may have, exactly as
// spelled (encoding/json would otherwise also accept "Engine" or "HOST").
var databaseKeys = map[string]bool{
	"engine": true, "host": true, "port": true, "name": true, "region": true, "secret_ref": true,
}

// ParseDatabase decodes a database object as a client sent it, rejecting any
// key other than the known ones. Keys that look like secrets get a reason
// that says where secrets go instead: a "password" must never be silently
// dropped, or the caller would believe TCS had stored it.
//
// Edges that accept documents from clients (the REST API) decode the
// database with it; stored documents are decoded leniently, like any JSON,
// so that a field added by a newer version does not make them unreadable.
//
// The error is an *Error (code Invalid) naming every offending key as
// "database.<key>"; a null gives a nil Database.
func ParseDatabase(data []byte) (*Database, error) {
	// A null means no database, as encoding/json decodes it.
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return nil, nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, FieldErrors([]FieldError{{Field: "database", Reason: "must be an object"}})
	}
	var fields []FieldError
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		switch {
		case databaseKeys[k]:
		case looksLikeSecretKey(k):
			fields = append(fields, FieldError{Field: fieldPath("database", k), Reason: reasonNoSecrets})
		default:
			fields = append(fields, FieldError{Field: fieldPath("database", k), Reason: ReasonUnknownField})
		}
	}
	if len(fields) > 0 {
		return nil, FieldErrors(fields)
	}

	var d Database
	if err := json.Unmarshal(data, &d); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, FieldErrors([]FieldError{{Field: fieldPath("database", te.Field), Reason: "must be a " + jsonKind(te.Type.Kind().String())}})
		}
		return nil, FieldErrors([]FieldError{{Field: "database", Reason: "is not a valid database object"}})
	}
	return &d, nil
}

// jsonKind names a Go kind as the JSON type a caller should have sent.
func jsonKind(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"):
		return "number"
	default:
		return kind
	}
}

// secretRefReason checks database.secret_ref: a reference to where the
// credentials are kept, never the credentials themselves. Only the shapes
// TCS's consumers know how to resolve are accepted, which also keeps a
// pasted password out (no password is an ARN), and a reference holding
// something that looks like a credential (a Vault token as the path, an
// access key id or a random string as a name) is refused too.
func secretRefReason(ref string) string {
	if len(ref) > MaxSecretRefLen {
		return fmt.Sprintf("must be at most %d bytes; got %d", MaxSecretRefLen, len(ref))
	}
	for i, r := range ref {
		if unicode.IsSpace(r) {
			return fmt.Sprintf("must not contain whitespace; found %q at %d", r, i)
		}
		if r > unicode.MaxASCII || !unicode.IsPrint(r) {
			return fmt.Sprintf("must be printable ASCII; found %q at %d", r, i)
		}
	}
	if r := secretValueReason(ref, true); r != "" {
		// A pasted token, even inside an ARN or a Vault path. There is no
		// escape: a secret's path or name is chosen by whoever stores it.
		return r + "; give the ARN or Vault path of the secret instead"
	}
	switch {
	case strings.HasPrefix(ref, "arn:"):
		return arnReason(ref)
	case strings.HasPrefix(ref, "vault:"):
		return vaultReason(ref)
	default:
		return "must be a reference, not a secret: an AWS Secrets Manager or SSM Parameter Store ARN (arn:…) or a Vault path (vault:… or vault://…)"
	}
}

// arnReason checks an ARN of a Secrets Manager secret or an SSM parameter:
// arn:<partition>:secretsmanager:<region>:<account>:secret:<name>, or
// arn:<partition>:ssm:<region>:<account>:parameter/<name>.
func arnReason(ref string) string {
	parts := strings.SplitN(ref, ":", 6)
	if len(parts) != 6 {
		return "ARN must have the form arn:partition:service:region:account:resource"
	}
	partition, service, region, account, resource := parts[1], parts[2], parts[3], parts[4], parts[5]
	if partition != "aws" && !strings.HasPrefix(partition, "aws-") {
		return fmt.Sprintf("ARN partition %q is not an AWS partition", partition)
	}
	if region == "" || !isLowerAlnumDash(region) {
		return fmt.Sprintf("ARN region %q is not a region", region)
	}
	if len(account) != 12 || !allDigits(account) {
		return fmt.Sprintf("ARN account %q is not a 12-digit account id", account)
	}
	switch service {
	case "secretsmanager":
		if name, ok := strings.CutPrefix(resource, "secret:"); !ok || name == "" {
			return "Secrets Manager ARN must end in secret:<name>"
		}
	case "ssm":
		if name, ok := strings.CutPrefix(resource, "parameter/"); !ok || name == "" {
			return "SSM ARN must end in parameter/<name>"
		}
	default:
		return fmt.Sprintf("ARN service %q is neither secretsmanager nor ssm", service)
	}
	return ""
}

// vaultReason checks a Vault reference: vault:<path> or vault://<path>. A
// query, fragment or user-info part is refused because that is where a
// token would ride along ("vault://x?token=…", "vault://user:pass@…").
func vaultReason(ref string) string {
	path := strings.TrimPrefix(ref, "vault:")
	path = strings.TrimPrefix(path, "//")
	if strings.Trim(path, "/") == "" {
		return "Vault reference must name a path"
	}
	if strings.ContainsAny(path, "?#@") {
		return "Vault reference must be a plain path, without a query, fragment or credentials"
	}
	return ""
}
