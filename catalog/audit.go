package catalog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// (see AuditHash): its top-level "hash" member removed.
func CanonicalAudit(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out bytes.Buffer
	if err := canonValue(dec, &out, true); err != nil {
		return nil, fmt.Errorf("canonical encoding: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("canonical encoding: data after the record")
	}
	return out.Bytes(), nil
}

func canonValue(dec *json.Decoder, out *bytes.Buffer, top bool) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return canonObject(dec, out, top)
		case '[':
			out.WriteByte('[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					out.WriteByte(',')
				}
				if err := canonValue(dec, out, false); err != nil {
					return err
				}
			}
			_, err := dec.Token() // ]
			out.WriteByte(']')
			return err
		}
		return fmt.Errorf("unexpected %v", v)
	case string:
		canonString(out, v)
	case json.Number:
		s := string(v)
		digits := strings.TrimPrefix(s, "-")
		if digits == "" || strings.Trim(digits, "0123456789") != "" || (len(digits) > 1 && digits[0] == '0') || s == "-0" {
			return fmt.Errorf("number %s is not an integer in canonical form", s)
		}
		out.WriteString(s)
	case bool:
		if v {
			out.WriteString("true")
		} else {
			out.WriteString("false")
		}
	case nil:
		out.WriteString("null")
	}
	return nil
}

func canonObject(dec *json.Decoder, out *bytes.Buffer, top bool) error {
	type member struct {
		key   string
		utf16 []uint16
		value []byte
	}
	var members []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		var value bytes.Buffer
		if err := canonValue(dec, &value, false); err != nil {
			return err
		}
		if top && key == "hash" {
			continue
		}
		members = append(members, member{key: key, utf16: utf16.Encode([]rune(key)), value: value.Bytes()})
	}
	if _, err := dec.Token(); err != nil { // }
		return err
	}
	slices.SortFunc(members, func(a, b member) int { return slices.Compare(a.utf16, b.utf16) })
	out.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			if members[i-1].key == m.key {
				return fmt.Errorf("member %q repeated", m.key)
			}
			out.WriteByte(',')
		}
		canonString(out, m.key)
		out.WriteByte(':')
		out.Write(m.value)
	}
	out.WriteByte('}')
	return nil
}

func canonString(out *bytes.Buffer, s string) {
	out.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			out.WriteString(`\"`)
		case '\\':
			out.WriteString(`\\`)
		case '\b':
			out.WriteString(`\b`)
		case '\f':
			out.WriteString(`\f`)
		case '\n':
			out.WriteString(`\n`)
		case '\r':
			out.WriteString(`\r`)
		case '\t':
			out.WriteString(`\t`)
		default:
			if r < 0x20 {
				fmt.Fprintf(out, `\u%04x`, r)
			} else {
				out.WriteRune(r)
			}
		}
	}
	out.WriteByte('"')
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
