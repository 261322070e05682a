package tenant

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Hostname limits from RFC 1035 / RFC 1123, counted on the ASCII (punycode)
// form without the trailing root dot.
const (
	maxHostnameLen = 253
	maxLabelLen    = 63

	// maxHostnameInput bounds the raw input before any work is done on it.
	// Punycode encoding is quadratic in the label length, so an unbounded
	// input would let one request burn CPU. 1024 bytes leaves room for a
	// 253-character name written in 4-byte runes plus a port.
	maxHostnameInput = 1024
)

// hostnameProfile converts internationalised hostnames to punycode.
//
// It is built explicitly rather than taken from idna.Lookup, whose
// configuration "may change over time": a hostname's canonical form is a key
// in the source of truth and in every replica, so it must not drift when the
// dependency is upgraded.
//
//   - MapForLookup applies the UTS #46 mapping (case folding, width and
//     compatibility mappings, NFC), so "BÜCHER.de" and "ｂüｃｈｅｒ.de" both
//     become "xn--bcher-kva.de". It then rejects, rather than repairs, what
//     cannot be a hostname: STD3 rules (no '_', '*', spaces or other ASCII
//     punctuation), hyphens at the start, end or in positions 3–4 of a label
//     (reserved for "xn--"), the joiner context rules of RFC 5892, and
//     "xn--" labels that do not decode to valid, normalised Unicode.
//   - BidiRule adds RFC 5893, which idna.Lookup also applies, so that a
//     right-to-left label cannot make the name display as a different one.
//   - Transitional(false) keeps "ß" and "ς" as themselves (IDNA2008), as
//     browsers now do, instead of folding them to "ss" and "σ".
//
// idna.Registration is not used because it rejects input that is not already
// mapped (an upper-case "Ü", say): right for a registry, too strict for
// normalising what an admin typed. idna.Punycode is not used because it
// validates almost nothing. VerifyDNSLength is left off: the RFC 1123 checks
// below run on every result anyway and give a reason that names the label.
var hostnameProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.Transitional(false),
)

// NormalizeHostname returns the canonical form of a hostname: lower case,
// internationalised labels in punycode, no port, no trailing dot. It rejects
// anything that is not an RFC 1123 hostname, including IP addresses, with an
// *Error (code Invalid, field "hostname") whose reason names the problem.
//
// The result is a fixed point: NormalizeHostname(h) returns h for any h it
// returned.
func NormalizeHostname(raw string) (string, error) {
	h, reason := normalizeHostname(raw, true)
	if reason != "" {
		return "", &Error{Code: Invalid, Message: "invalid hostname", Fields: []FieldError{{Field: "hostname", Reason: reason}}}
	}
	return h, nil
}

// normalizeHostname does the work of NormalizeHostname and returns either the
// canonical hostname or a reason it is not one, so that callers can put the
// reason under their own field name. allowPort says whether a ":port" suffix
// is stripped (a lookup key) or refused (a database host, whose port has its
// own field).
func normalizeHostname(raw string, allowPort bool) (host, reason string) {
	if raw == "" {
		return "", "is required"
	}
	if len(raw) > maxHostnameInput {
		return "", fmt.Sprintf("is too long: %d bytes (a hostname is at most %d characters)", len(raw), maxHostnameLen)
	}
	if !utf8.ValidString(raw) {
		return "", "is not valid UTF-8"
	}
	// Surrounding space is rejected, not trimmed: a caller that sends it has
	// a bug worth seeing, and silently trimming would make two different
	// inputs the same key.
	for i, r := range raw {
		switch {
		case unicode.IsSpace(r):
			return "", fmt.Sprintf("must not contain whitespace; found %q at %d", r, i)
		case unicode.IsControl(r):
			return "", fmt.Sprintf("must not contain control characters; found %q at %d", r, i)
		}
	}
	if strings.HasPrefix(raw, "[") {
		return "", "IPv6 addresses are not hostnames"
	}

	s := raw
	switch strings.Count(s, ":") {
	case 0:
	case 1:
		var port string
		s, port, _ = strings.Cut(s, ":")
		if !allowPort {
			return "", "must not include a port; use database.port"
		}
		if r := portReason(port); r != "" {
			return "", r
		}
		if s == "" {
			return "", "is required before the port"
		}
	default:
		if _, err := netip.ParseAddr(s); err == nil {
			return "", "IPv6 addresses are not hostnames"
		}
		return "", "has more than one ':'; only a port may follow the hostname"
	}

	s = asciiLower(s)
	if r := asciiLabelReason(s); r != "" {
		return "", r
	}
	if needsIDNA(s) {
		a, err := hostnameProfile.ToASCII(s)
		if err != nil {
			return "", idnaReason(s, err)
		}
		if r := mappedReason(a); r != "" {
			return "", r
		}
		s = a
	}
	// The trailing dot is stripped after the IDNA mapping so that a name
	// typed with an ideographic full stop ("example.com。") loses it too.
	s = strings.TrimSuffix(s, ".")
	if r := rfc1123Reason(s); r != "" {
		return "", r
	}
	return s, ""
}

// portReason says what is wrong with the port of "host:port", if anything.
func portReason(port string) string {
	if port == "" {
		return "port is empty"
	}
	n := 0
	for i := 0; i < len(port); i++ {
		c := port[i]
		if c < '0' || c > '9' {
			return fmt.Sprintf("port %q is not a number", port)
		}
		// Stop accumulating once out of range so long inputs cannot overflow.
		if n <= 65535 {
			n = n*10 + int(c-'0')
		}
	}
	if n < 1 || n > 65535 {
		return fmt.Sprintf("port %s is out of range 1-65535", port)
	}
	return ""
}

// asciiLower lower-cases ASCII letters only. Non-ASCII case folding is left to
// the UTS #46 mapping, which differs from strings.ToLower in places (U+0130
// "İ", for one) and is what DNS clients apply.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// asciiLabelReason rejects ASCII characters that can never be in a hostname
// before IDNA sees them, so that the reason names the label and the character
// ("label \"a_b\" contains '_'") rather than a Unicode code point.
func asciiLabelReason(s string) string {
	for _, label := range strings.Split(s, ".") {
		if label == "xn--" {
			return `label "xn--" has an empty punycode part`
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= utf8.RuneSelf, isLDH(c):
			case c == '*':
				return fmt.Sprintf("wildcard label %q is not allowed", label)
			default:
				return fmt.Sprintf("label %q contains %q", label, rune(c))
			}
		}
	}
	return ""
}

// isLDH reports whether c is a letter (already lower-cased), digit or hyphen:
// the only characters RFC 1123 allows in a label.
func isLDH(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-'
}

// needsIDNA reports whether s has anything the IDNA profile would change or
// check beyond what rfc1123Reason checks itself: non-ASCII runes, and labels
// with "--" in positions 3 and 4 ("xn--" punycode, which must be decoded to
// be validated, and the other prefixes RFC 5891 reserves, which the profile
// rejects). An ASCII LDH name without those passes through the profile
// unchanged, so skipping it keeps the common lookup path cheap.
func needsIDNA(s string) bool {
	for _, label := range strings.Split(s, ".") {
		if len(label) >= 4 && label[2] == '-' && label[3] == '-' {
			return true
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// idnaDots are the runes UTS #46 maps to a label separator.
var idnaDots = []string{".", "\u3002", "\uff0e", "\uff61"}

// idnaReason turns an IDNA failure into a reason that names the label at
// fault. The idna package reports errors for the whole name, so each label is
// converted on its own to find the first that fails; if none does alone (the
// bidi rule looks across labels), the whole-name error is reported.
func idnaReason(s string, err error) string {
	labels := []string{s}
	for _, dot := range idnaDots {
		var next []string
		for _, l := range labels {
			next = append(next, strings.Split(l, dot)...)
		}
		labels = next
	}
	for _, l := range labels {
		if l == "" {
			continue
		}
		if _, lerr := hostnameProfile.ToASCII(l); lerr != nil {
			return labelIDNAReason(l, lerr)
		}
	}
	return "is not a valid internationalised hostname: " + idnaMessage(err)
}

// labelIDNAReason words the IDNA failure of one label. The idna package's
// own message only repeats the label, except for a disallowed rune, which is
// worth naming.
func labelIDNAReason(label string, err error) string {
	msg := idnaMessage(err)
	switch {
	case strings.HasPrefix(label, "xn--"):
		return fmt.Sprintf("label %q is not valid punycode for an internationalised label", label)
	case len(label) >= 4 && label[2:4] == "--":
		return fmt.Sprintf(`label %q has "--" in positions 3 and 4, which is reserved for IDNA labels such as "xn--"`, label)
	case strings.HasPrefix(msg, "disallowed rune"):
		return fmt.Sprintf("label %q is not a valid internationalised label: %s", label, msg)
	default:
		return fmt.Sprintf("label %q is not a valid internationalised label", label)
	}
}

// mappedReason checks that the punycode form a is itself accepted, unchanged,
// by the IDNA profile, which is what makes NormalizeHostname a fixed point.
// It is not redundant: the idna package decides whether to apply the Bidi
// Rule from the runes before mapping, so "0ℶ" (U+2136 BET SYMBOL, a
// left-to-right symbol) passes, but it maps to "0ב" (Hebrew bet,
// right-to-left), whose punycode "xn--0-2hc" then fails the Bidi Rule when
// read back. Found by FuzzNormalizeHostname.
func mappedReason(a string) string {
	again, err := hostnameProfile.ToASCII(a)
	if err == nil && again == a {
		return ""
	}
	for _, l := range strings.Split(a, ".") {
		if _, lerr := hostnameProfile.ToASCII(l); lerr != nil {
			u, _ := idna.Punycode.ToUnicode(l)
			return fmt.Sprintf("label %q, as mapped from the input, is not a valid internationalised label", u)
		}
	}
	return fmt.Sprintf("%q, as mapped from the input, is not a valid internationalised hostname", a)
}

// idnaMessage drops the package prefix from an idna error.
func idnaMessage(err error) string {
	return strings.TrimPrefix(err.Error(), "idna: ")
}

// rfc1123Reason checks an ASCII hostname (after IDNA, without trailing dot)
// against RFC 1123 and says what is wrong with it, if anything. It runs on
// every result, whichever path produced it, and is what guarantees that an
// accepted name contains only [a-z0-9.-].
func rfc1123Reason(s string) string {
	if s == "" {
		return "must contain at least one label"
	}
	labels := strings.Split(s, ".")
	for i, label := range labels {
		switch {
		case label == "" && i == 0:
			return "must not start with '.'"
		case label == "":
			return "has an empty label (\"..\")"
		case len(label) > maxLabelLen:
			return fmt.Sprintf("label %q is %d characters; at most %d are allowed", label, len(label), maxLabelLen)
		case label[0] == '-':
			return fmt.Sprintf("label %q starts with '-'", label)
		case label[len(label)-1] == '-':
			return fmt.Sprintf("label %q ends with '-'", label)
		}
		for j := 0; j < len(label); j++ {
			if !isLDH(label[j]) {
				return fmt.Sprintf("label %q contains %q", label, rune(label[j]))
			}
		}
	}
	if len(s) > maxHostnameLen {
		return fmt.Sprintf("is %d characters; at most %d are allowed", len(s), maxHostnameLen)
	}
	// RFC 1123 §2.1: a top-level label is never all-numeric, which is what
	// tells a hostname from a dotted-decimal IPv4 address. A hex last label
	// ("0x7f") is refused too: browsers (the WHATWG URL parser) read a name
	// ending in one as an IPv4 address, so it could never reach us as a
	// hostname anyway.
	last := labels[len(labels)-1]
	if allDigits(last) {
		if _, err := netip.ParseAddr(s); err == nil {
			return "IP addresses are not hostnames"
		}
		return fmt.Sprintf("last label %q is all numeric; IP addresses are not hostnames", last)
	}
	if isHexNumber(last) {
		return fmt.Sprintf("last label %q is a hexadecimal number; IP addresses are not hostnames", last)
	}
	return ""
}

// isHexNumber reports whether s is "0x" followed by hex digits (or nothing),
// which the WHATWG URL parser takes as a number.
func isHexNumber(s string) bool {
	rest, ok := strings.CutPrefix(s, "0x")
	if !ok {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// normalizeDatabaseHost returns the canonical form of a database host: an IP
// address in its netip form (private networks often have no DNS name for a
// database), or a hostname normalised as NormalizeHostname does. A port is
// refused, not stripped: it belongs in database.port.
func normalizeDatabaseHost(raw string) (host, reason string) {
	if raw == "" {
		return "", "is required"
	}
	if strings.HasPrefix(raw, "[") {
		return "", "must be an IP address without brackets or a hostname without a port"
	}
	if looksLikeIP(raw) {
		addr, err := netip.ParseAddr(raw)
		if err != nil {
			return "", fmt.Sprintf("is not a valid IP address: %v", err)
		}
		if addr.Zone() != "" {
			return "", "IP address must not have a zone"
		}
		// Unmap so that "::ffff:10.0.0.1" and "10.0.0.1" are one host.
		return addr.Unmap().String(), ""
	}
	return normalizeHostname(raw, false)
}

// looksLikeIP reports whether s is meant as an IP address rather than a
// hostname: two colons or more (IPv6; one colon is "host:port"), or nothing
// but digits and dots (IPv4, whose last label RFC 1123 forbids in a hostname
// anyway). Anything it claims must parse as an address, so a mistyped IP is
// reported as such rather than as a strange hostname.
func looksLikeIP(s string) bool {
	if strings.Count(s, ":") >= 2 {
		return true
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}
