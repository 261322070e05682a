package catalog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// AdminAuditID names the audit chain of the operations that change no
// tenant (resync and resync-all). It is not a valid tenant id (ids are
// [a-z0-9-]), so it never collides with one. Store.History(AdminAuditID)
// lists it; GET /v1/admin/history serves it.
const AdminAuditID = "_admin"

// Audited operations of the AdminAuditID chain.
const (
	ActionResync    Action = "resync"
	ActionResyncAll Action = "resync-all"
)

// ResyncAudit is what a resync asked for, on a record of the AdminAuditID
// chain.
type ResyncAudit struct {
	// All is set by a resync-all page; After is the id the page started
	// after ("" for the first page).
	All   bool   `json:"all,omitempty"`
	After string `json:"after,omitempty"`
	// Tenants are the ids resynced: those requested (merged, in request
	// order) or, for a resync-all page, those of the page.
	Tenants []string `json:"tenants"`
	// Regions the events were addressed to; none means every region.
	Regions []string `json:"regions,omitempty"`
}

// SealAudit chains rec after the record whose hash is prev ("" starts a
// chain): it sets rec.PrevHash, computes rec.Hash over the canonical
// encoding of rec (see AuditHash) and returns the JSON to store, which is
// also kept in rec.Raw.
func SealAudit(rec *AuditRecord, prev string) ([]byte, error) {
	rec.PrevHash, rec.Hash, rec.Raw = prev, "", nil
	raw, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode audit record %s/%d: %w", rec.TenantID, rec.Version, err)
	}
	h, err := AuditHash(raw)
	if err != nil {
		return nil, fmt.Errorf("hash audit record %s/%d: %w", rec.TenantID, rec.Version, err)
	}
	rec.Hash = h
	// raw is an object without a "hash" member (Hash was empty and is
	// omitted): append it rather than encoding the record twice.
	sealed := make([]byte, 0, len(raw)+len(h)+10)
	sealed = append(sealed, raw[:len(raw)-1]...)
	sealed = append(sealed, `,"hash":"`...)
	sealed = append(sealed, h...)
	sealed = append(sealed, `"}`...)
	rec.Raw = sealed
	return sealed, nil
}

// AuditHash returns the hash of an audit record given as JSON: the
// lowercase hex SHA-256 of its canonical encoding, which is the record's
// JSON object without its top-level "hash" member, encoded as RFC 8785 (JSON
// Canonicalization Scheme) does:
//
//   - no whitespace outside strings;
//   - object members sorted by their names compared as UTF-16 code units,
//     no name repeated (a repeated name is an error);
//   - strings as UTF-8 with only these escapes: \" \\ \b \f \n \r \t, and
//     \u00xx (lowercase hex) for the other characters below U+0020;
//   - literals true, false, null;
//   - numbers: audit records hold integers only, written in decimal with no
//     plus sign, leading zero, fraction or exponent (RFC 8785's form for
//     integers of magnitude up to 2^53); any other number is an error.
//
// The hash covers prev_hash, so each record commits to its predecessor.
func AuditHash(raw []byte) (string, error) {
	c, err := CanonicalAudit(raw)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:]), nil
}

// CanonicalAudit returns the canonical encoding of an audit record's JSON
// (see AuditHash): its top-level "hash" member removed. It parses the JSON
// itself (every write canonicalises its record, so this is on the write
// path): strings without escapes are copied as they are, which is their
// canonical form.
func CanonicalAudit(raw []byte) ([]byte, error) {
	c := canonicalizer{in: raw}
	out := make([]byte, 0, len(raw))
	out, err := c.value(out, 0, true)
	if err == nil {
		c.space()
		if c.pos != len(c.in) {
			err = errors.New("data after the record")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("canonical encoding: %w", err)
	}
	return out, nil
}

// maxCanonicalDepth bounds nesting (records nest three or four deep).
const maxCanonicalDepth = 64

type canonicalizer struct {
	in  []byte
	pos int
}

func (c *canonicalizer) space() {
	for c.pos < len(c.in) {
		switch c.in[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

func (c *canonicalizer) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", c.pos, fmt.Sprintf(format, args...))
}

// value appends the canonical form of the value at c.pos to out.
func (c *canonicalizer) value(out []byte, depth int, top bool) ([]byte, error) {
	if depth > maxCanonicalDepth {
		return nil, c.errorf("nested deeper than %d", maxCanonicalDepth)
	}
	c.space()
	if c.pos >= len(c.in) {
		return nil, c.errorf("unexpected end")
	}
	switch b := c.in[c.pos]; {
	case b == '{':
		return c.object(out, depth, top)
	case b == '[':
		c.pos++
		out = append(out, '[')
		c.space()
		if c.pos < len(c.in) && c.in[c.pos] == ']' {
			c.pos++
			return append(out, ']'), nil
		}
		for {
			var err error
			if out, err = c.value(out, depth+1, false); err != nil {
				return nil, err
			}
			c.space()
			if c.pos >= len(c.in) {
				return nil, c.errorf("unterminated array")
			}
			switch c.in[c.pos] {
			case ',':
				c.pos++
				out = append(out, ',')
			case ']':
				c.pos++
				return append(out, ']'), nil
			default:
				return nil, c.errorf("unexpected %q in array", c.in[c.pos])
			}
		}
	case b == '"':
		s, err := c.str()
		if err != nil {
			return nil, err
		}
		return appendCanonString(out, s), nil
	case b == 't' || b == 'f' || b == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(c.in[c.pos:], []byte(lit)) {
				c.pos += len(lit)
				return append(out, lit...), nil
			}
		}
		return nil, c.errorf("invalid literal")
	case b == '-' || (b >= '0' && b <= '9'):
		start := c.pos
		for c.pos < len(c.in) && strings.IndexByte("+-.eE0123456789", c.in[c.pos]) >= 0 {
			c.pos++
		}
		num := string(c.in[start:c.pos])
		digits := strings.TrimPrefix(num, "-")
		if digits == "" || strings.Trim(digits, "0123456789") != "" || (len(digits) > 1 && digits[0] == '0') || num == "-0" {
			return nil, fmt.Errorf("number %s is not an integer in canonical form", num)
		}
		return append(out, num...), nil
	default:
		return nil, c.errorf("unexpected %q", b)
	}
}

type canonMember struct {
	key        string
	start, end int // the value's canonical form in the object's buffer
}

func (c *canonicalizer) object(out []byte, depth int, top bool) ([]byte, error) {
	c.pos++ // {
	var members []canonMember
	var values []byte
	c.space()
	if c.pos < len(c.in) && c.in[c.pos] == '}' {
		c.pos++
		return append(out, "{}"...), nil
	}
	for {
		c.space()
		if c.pos >= len(c.in) || c.in[c.pos] != '"' {
			return nil, c.errorf("object member name expected")
		}
		key, err := c.str()
		if err != nil {
			return nil, err
		}
		c.space()
		if c.pos >= len(c.in) || c.in[c.pos] != ':' {
			return nil, c.errorf("':' expected after member %q", key)
		}
		c.pos++
		start := len(values)
		if values, err = c.value(values, depth+1, false); err != nil {
			return nil, err
		}
		if !(top && key == "hash") {
			members = append(members, canonMember{key: key, start: start, end: len(values)})
		}
		c.space()
		if c.pos >= len(c.in) {
			return nil, c.errorf("unterminated object")
		}
		if c.in[c.pos] == '}' {
			c.pos++
			break
		}
		if c.in[c.pos] != ',' {
			return nil, c.errorf("unexpected %q in object", c.in[c.pos])
		}
		c.pos++
	}
	slices.SortFunc(members, func(a, b canonMember) int { return compareUTF16(a.key, b.key) })
	out = append(out, '{')
	for i, m := range members {
		if i > 0 {
			if members[i-1].key == m.key {
				return nil, fmt.Errorf("member %q repeated", m.key)
			}
			out = append(out, ',')
		}
		out = appendCanonString(out, m.key)
		out = append(out, ':')
		out = append(out, values[m.start:m.end]...)
	}
	return append(out, '}'), nil
}

// str reads the string at c.pos and returns its value.
func (c *canonicalizer) str() (string, error) {
	start := c.pos
	c.pos++ // "
	escaped := false
	for c.pos < len(c.in) {
		switch b := c.in[c.pos]; {
		case b == '"':
			c.pos++
			s := c.in[start+1 : c.pos-1]
			if !utf8.Valid(s) {
				return "", c.errorf("string is not UTF-8")
			}
			if !escaped {
				return string(s), nil
			}
			var v string
			if err := json.Unmarshal(c.in[start:c.pos], &v); err != nil {
				return "", c.errorf("invalid string: %v", err)
			}
			return v, nil
		case b == '\\':
			escaped = true
			c.pos += 2
		case b < 0x20:
			return "", c.errorf("control character in string")
		default:
			c.pos++
		}
	}
	return "", c.errorf("unterminated string")
}

// compareUTF16 orders strings by their UTF-16 code units, as RFC 8785
// sorts member names. UTF-8 byte order is code point order, which differs
// only when one side has a code point above U+FFFF.
func compareUTF16(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			if a[i] < 0x80 && b[i] < 0x80 {
				return int(a[i]) - int(b[i])
			}
			return slices.Compare(utf16.Encode([]rune(a[i:])), utf16.Encode([]rune(b[i:])))
		}
	}
	return len(a) - len(b)
}

func appendCanonString(out []byte, s string) []byte {
	out = append(out, '"')
	for i := 0; i < len(s); i++ {
		switch b := s[i]; b {
		case '"':
			out = append(out, '\\', '"')
		case '\\':
			out = append(out, '\\', '\\')
		case '\b':
			out = append(out, '\\', 'b')
		case '\f':
			out = append(out, '\\', 'f')
		case '\n':
			out = append(out, '\\', 'n')
		case '\r':
			out = append(out, '\\', 'r')
		case '\t':
			out = append(out, '\\', 't')
		default:
			if b < 0x20 {
				out = fmt.Appendf(out, `\u%04x`, b)
			} else {
				out = append(out, b)
			}
		}
	}
	return append(out, '"')
}

// MarshalJSON writes Raw when it is set (a record read from a store is
// served exactly as stored, so that its hash can be checked by anyone),
// and the fields otherwise.
func (r AuditRecord) MarshalJSON() ([]byte, error) {
	if len(r.Raw) > 0 {
		return r.Raw, nil
	}
	type plain AuditRecord
	return json.Marshal(plain(r))
}

// UnmarshalJSON decodes the fields and keeps the JSON in Raw.
func (r *AuditRecord) UnmarshalJSON(b []byte) error {
	type plain AuditRecord
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*r = AuditRecord(p)
	r.Raw = bytes.Clone(b)
	return nil
}

// ChainProblem is one way an audit chain fails verification, at a version.
type ChainProblem struct {
	Version int64  `json:"version"`
	Problem string `json:"problem"`
}

func (p ChainProblem) String() string { return fmt.Sprintf("version %d: %s", p.Version, p.Problem) }

// ChainReport is what VerifyChain found in one chain.
type ChainReport struct {
	Chain string `json:"chain"`
	// Records were read; Unchained of them (the oldest) carry no hash:
	// written before audit records were chained, they are not protected.
	Records   int `json:"records"`
	Unchained int `json:"unchained"`
	// Head is the hash of the newest record ("" if it has none).
	Head     string         `json:"head,omitempty"`
	Problems []ChainProblem `json:"problems,omitempty"`
}

// VerifyChain checks the audit records of chain, given oldest first (as
// read, Raw set), against the rules every store keeps:
//
//  1. the versions run 1, 2, 3… with none missing, repeated or out of order,
//     up to latest when latest > 0 (a tenant's current version);
//  2. a record with a hash: AuditHash of its JSON is that hash (else it was
//     altered), and its prev_hash is the hash of the record before it, or ""
//     when it is the first record or the one before has no hash (else a
//     record was altered, inserted, deleted or reordered);
//  3. records without a hash (written before chaining) come only before the
//     first record with one: the chain starts at the first hashed record.
func VerifyChain(chain string, recs []AuditRecord, latest int64) ChainReport {
	rep := ChainReport{Chain: chain, Records: len(recs)}
	problem := func(v int64, format string, args ...any) {
		rep.Problems = append(rep.Problems, ChainProblem{Version: v, Problem: fmt.Sprintf(format, args...)})
	}
	want := int64(1)
	prevHash, chained := "", false
	for _, r := range recs {
		switch {
		case r.TenantID != chain:
			problem(r.Version, "record of %q in the chain of %q", r.TenantID, chain)
		case r.Version > want:
			problem(want, "versions %d to %d missing (deleted?)", want, r.Version-1)
		case r.Version < want:
			problem(r.Version, "out of order or repeated after version %d", want-1)
		}
		want = max(want, r.Version+1)
		raw := r.Raw
		if len(raw) == 0 {
			var err error
			if raw, err = json.Marshal(r); err != nil {
				problem(r.Version, "cannot encode: %v", err)
				continue
			}
		}
		if r.Hash == "" {
			if chained {
				problem(r.Version, "no hash after the chain started (hash removed?)")
			} else {
				rep.Unchained++
			}
			prevHash = ""
			continue
		}
		got, err := AuditHash(raw)
		switch {
		case err != nil:
			problem(r.Version, "altered: %v", err)
		case got != r.Hash:
			problem(r.Version, "altered: content hashes to %s, record says %s", short(got), short(r.Hash))
		}
		if r.PrevHash != prevHash {
			if prevHash == "" {
				problem(r.Version, "prev_hash %s but no hashed record precedes it (record before it deleted or altered?)", short(r.PrevHash))
			} else {
				problem(r.Version, "prev_hash %s is not the hash %s of the record before it (a record altered, inserted, deleted or reordered)", short(r.PrevHash), short(prevHash))
			}
		}
		chained, prevHash = true, r.Hash
	}
	if latest > 0 && want-1 < latest {
		problem(want, "versions %d to %d missing: the tenant is at version %d", want, latest, latest)
	}
	if latest > 0 && want-1 > latest {
		problem(want-1, "record beyond the tenant's version %d (inserted?)", latest)
	}
	rep.Head = prevHash
	return rep
}

func short(h string) string {
	if h == "" {
		return `""`
	}
	if len(h) > 12 && utf8.ValidString(h) {
		return h[:12] + "…"
	}
	return h
}
