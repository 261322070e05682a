package tenant

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNormalizeHostname(t *testing.T) {
	t.Parallel()
	long63 := strings.Repeat("a", 63)
	// 63+1+63+1+63+1+61 = 253 characters: the longest name allowed.
	longest := long63 + "." + long63 + "." + long63 + "." + strings.Repeat("b", 61)
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"plain", "example.com", "example.com"},
		{"single label", "localhost", "localhost"},
		{"upper case", "Example.COM", "example.com"},
		{"trailing dot", "example.com.", "example.com"},
		{"port", "example.com:8080", "example.com"},
		{"port and trailing dot", "example.com.:443", "example.com"},
		{"port with leading zero", "example.com:080", "example.com"},
		{"highest port", "example.com:65535", "example.com"},
		{"digits and hyphens", "a-1.b2.c3d", "a-1.b2.c3d"},
		{"numeric non-last label", "123.example.com", "123.example.com"},
		{"last label starting 0x but not hex", "example.0xyz", "example.0xyz"},
		{"last label starting with a digit", "example.3com", "example.3com"},
		{"unicode", "bücher.de", "xn--bcher-kva.de"},
		{"unicode upper case", "BÜCHER.DE", "xn--bcher-kva.de"},
		{"full width", "ｂüｃｈｅｒ.de", "xn--bcher-kva.de"},
		{"punycode kept", "xn--bcher-kva.de", "xn--bcher-kva.de"},
		{"punycode upper case", "XN--BCHER-KVA.DE", "xn--bcher-kva.de"},
		{"unicode with port", "éxample.com:8080", "xn--xample-9ua.com"},
		{"ideographic full stop", "example。com", "example.com"},
		{"ideographic trailing dot", "example.com。", "example.com"},
		{"sharp s kept (non-transitional)", "faß.de", "xn--fa-hia.de"},
		{"final sigma kept", "ς.gr", "xn--3xa.gr"},
		{"dotted capital I", "İstanbul.tr", "xn--istanbul-o0e.tr"},
		{"arabic", "مثال.إختبار", "xn--mgbh0fb.xn--kgbechtv"},
		{"soft hyphen ignored", "exa\u00admple.com", "example.com"},
		{"kelvin sign", "\u212a.com", "k.com"},
		{"63-character label", long63 + ".com", long63 + ".com"},
		{"253 characters", longest, longest},
		{"253 characters and trailing dot", longest + ".", longest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := NormalizeHostname(tt.in)
			if err != nil {
				t.Fatalf("NormalizeHostname(%q) error: %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("NormalizeHostname(%q) = %q, want %q", tt.in, got, tt.want)
			}
			again, err := NormalizeHostname(got)
			if err != nil || again != got {
				t.Errorf("NormalizeHostname(%q) = %q, %v; want it unchanged", got, again, err)
			}
		})
	}
}

func TestNormalizeHostnameRejects(t *testing.T) {
	t.Parallel()
	long63 := strings.Repeat("a", 63)
	tests := []struct {
		name   string
		in     string
		reason string // a substring of the reason
	}{
		{"empty", "", "is required"},
		{"leading space", " example.com", "whitespace; found ' ' at 0"},
		{"trailing space", "example.com ", "whitespace; found ' ' at 11"},
		{"tab", "exa\tmple.com", "whitespace"},
		{"newline", "example.com\n", "whitespace"},
		{"ideographic space", "example\u3000com", "whitespace"},
		{"control", "exa\x00mple.com", "control characters"},
		{"invalid utf-8", "exa\xffmple.com", "UTF-8"},
		{"too long input", strings.Repeat("a", 2000), "too long"},
		{"underscore", "a_b.example.com", `label "a_b" contains '_'`},
		{"wildcard", "*.example.com", `wildcard label "*"`},
		{"embedded wildcard", "a*.example.com", `wildcard label "a*"`},
		{"slash", "example.com/path", `contains '/'`},
		{"at sign", "user@example.com", `contains '@'`},
		{"ipv4", "192.0.2.1", "IP addresses are not hostnames"},
		{"ipv4 with port", "192.0.2.1:80", "IP addresses are not hostnames"},
		{"short ipv4", "127.1", "IP addresses are not hostnames"},
		{"numeric last label", "example.123", `last label "123" is all numeric`},
		{"hex last label", "example.0x7F", `last label "0x7f" is a hexadecimal number`},
		{"bare 0x last label", "example.0x", "hexadecimal number"},
		{"ipv6", "2001:db8::1", "IPv6"},
		{"ipv6 loopback", "::1", "IPv6"},
		{"ipv6 literal", "[2001:db8::1]", "IPv6"},
		{"ipv6 literal with port", "[::1]:443", "IPv6"},
		{"ipv6 zone", "fe80::1%eth0", "IPv6"},
		{"two colons", "a:b:80", "more than one ':'"},
		{"bracket inside", "a]b.com", `label "a]b" contains ']'`},
		{"empty port", "example.com:", "port is empty"},
		{"non-numeric port", "example.com:http", `port "http" is not a number`},
		{"negative port", "example.com:-1", "not a number"},
		{"port zero", "example.com:0", "out of range"},
		{"port too high", "example.com:65536", "out of range"},
		{"huge port", "example.com:99999999999999999999999", "out of range"},
		{"full-width port digits", "example.com:８０", "not a number"},
		{"port only", ":80", "is required before the port"},
		{"two trailing dots", "example.com..", "empty label"},
		{"empty label", "a..b", "empty label"},
		{"leading dot", ".example.com", "must not start with '.'"},
		{"only a dot", ".", "at least one label"},
		{"leading hyphen", "-a.example.com", `label "-a" starts with '-'`},
		{"trailing hyphen", "a-.example.com", `label "a-" ends with '-'`},
		{"reserved hyphens", "ab--cd.example.com", `"--" in positions 3 and 4`},
		{"label too long", long63 + "a.com", "is 64 characters; at most 63"},
		{"name too long", strings.Repeat(long63+".", 4) + "com", "at most 253"},
		{"unicode label too long", strings.Repeat("ü", 60) + ".de", "at most 63"},
		{"empty punycode", "xn--.com", `label "xn--" has an empty punycode part`},
		{"bad punycode", "xn--zz.com", `label "xn--zz" is not valid punycode`},
		{"punycode of ascii", "xn--abc-.com", "not valid punycode"},
		{"disallowed rune", "a\u2488com", "disallowed rune U+2488"},
		{"zero-width joiner", "a\u200db.com", "not a valid internationalised label"},
		{"full-width underscore", "a\uff3fb.com", "disallowed rune"},
		{"maps to a label failing the bidi rule", "0\u2136", `label "0ב", as mapped from the input`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := NormalizeHostname(tt.in)
			if err == nil {
				t.Fatalf("NormalizeHostname(%q) = %q, want an error", tt.in, got)
			}
			assertFieldErrors(t, err, []FieldError{{Field: "hostname", Reason: tt.reason}})
		})
	}
}

// assertFieldErrors checks that err is an Invalid *Error whose fields have
// exactly the wanted names, in order, and whose reasons contain the wanted
// reasons.
func assertFieldErrors(t testing.TB, err error, want []FieldError) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	if e.Code != Invalid {
		t.Errorf("code = %q, want %q", e.Code, Invalid)
	}
	if diff := cmp.Diff(fieldNames(want), fieldNames(e.Fields)); diff != "" {
		t.Fatalf("fields (-want +got):\n%s\nerror: %v", diff, err)
	}
	for i, w := range want {
		if !strings.Contains(e.Fields[i].Reason, w.Reason) {
			t.Errorf("%s: reason %q does not contain %q", w.Field, e.Fields[i].Reason, w.Reason)
		}
	}
}

func fieldNames(fs []FieldError) []string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.Field
	}
	return names
}
