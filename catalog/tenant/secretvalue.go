package tenant

import (
	"fmt"
	"math"
	"strings"
)

// OpaqueLabelPrefix marks a label whose value is random by nature (a commit
// hash, a checksum, a generated id): its value is not refused for looking
// random, only for having the shape of a known credential. It is the one
// escape from the high-entropy check, and it is written into the document
// itself, so that the decision is visible to whoever reads the tenant or its
// history and holds for that label only, whichever catalog process serves
// the write.
const OpaqueLabelPrefix = "opaque/"

// Bounds of the high-entropy check (see highEntropy).
const (
	// minMixedRun is the shortest run of mixed-case letters and digits
	// judged: shorter random strings overlap with ordinary identifiers.
	minMixedRun = 20
	// minSingleCaseRun is the shortest run of one-case letters and digits
	// (hex digests, lower-case tokens) judged.
	minSingleCaseRun = 32
	// mixedEntropySlack is how far below randomEntropy a mixed-case run may
	// fall and still count as random: random base62 strings lie within
	// about 0.3 of it, identifiers made of words 0.6 or more below.
	mixedEntropySlack = 0.5
	// minSingleCaseEntropy is the entropy (bits per character) from which a
	// long one-case run counts as random: hex digests have about 3.7,
	// random lower-case alphanumerics about 4.3.
	minSingleCaseEntropy = 3.0
)

// awsKeyIDPrefixes start AWS access key ids (AKIA…, temporary ASIA…) and
// the other unique ids AWS issues with the same 20-character shape.
var awsKeyIDPrefixes = []string{"AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "APKA"}

// tokenPrefixes start credentials of well-known services; a word starting
// with one, followed by at least min characters, is refused.
var tokenPrefixes = []struct {
	prefix, what string
	min          int
}{
	{"hvs.", "a Vault service token", 20},
	{"hvb.", "a Vault batch token", 20},
	{"hvr.", "a Vault recovery token", 20},
	{"ghp_", "a GitHub token", 30},
	{"gho_", "a GitHub token", 30},
	{"ghu_", "a GitHub token", 30},
	{"ghs_", "a GitHub token", 30},
	{"ghr_", "a GitHub token", 30},
	{"github_pat_", "a GitHub token", 30},
	{"glpat-", "a GitLab token", 20},
	{"xoxb-", "a Slack token", 10},
	{"xoxp-", "a Slack token", 10},
	{"xoxa-", "a Slack token", 10},
	{"xoxs-", "a Slack token", 10},
	{"sk_live_", "a Stripe key", 10},
	{"rk_live_", "a Stripe key", 10},
	{"npm_", "an npm token", 30},
	{"AIza", "a Google API key", 30},
}

// secretValueReason says why v looks like a credential, or "" if it does
// not. It checks the shapes of known credentials (Vault tokens, legacy
// ones included, AWS access key ids, PEM blocks, JWTs, well-known service
// tokens, URLs with a password) and, when entropy is set, for runs of
// characters random enough to be a generated secret. The reason never
// repeats the value: it is shown to callers and logged.
func secretValueReason(v string, entropy bool) string {
	what := secretShape(v)
	if what == "" && entropy {
		if n, bits, ok := highEntropy(v); ok {
			what = fmt.Sprintf("a generated secret (%d random-looking characters, %.1f bits of entropy per character)", n, bits)
		}
	}
	if what == "" {
		return ""
	}
	return "looks like " + what + ": TCS never stores secrets"
}

// secretShape names the kind of credential v contains, or "".
func secretShape(v string) string {
	if strings.Contains(v, "-----BEGIN") || strings.Contains(strings.ToUpper(v), "PRIVATE KEY") {
		return "a private key (PEM)"
	}
	if i := strings.Index(v, "://"); i >= 0 {
		// scheme://user:password@host
		rest := v[i+3:]
		if at := strings.IndexByte(rest, '@'); at > 0 {
			if slash := strings.IndexByte(rest, '/'); slash < 0 || slash > at {
				if strings.Contains(rest[:at], ":") {
					return "a URL with a password"
				}
			}
		}
	}
	for _, w := range words(v, isTokenWordRune) {
		for _, p := range tokenPrefixes {
			if strings.HasPrefix(w, p.prefix) && len(w)-len(p.prefix) >= p.min {
				return p.what
			}
		}
		// Vault's legacy tokens: s. (service), b. (batch) or r. (recovery)
		// and 24 or more letters and digits.
		if len(w) >= 26 && w[1] == '.' && strings.ContainsRune("sbr", rune(w[0])) && isAlnum(w[2:]) {
			return "a Vault token"
		}
		if strings.HasPrefix(w, "eyJ") && strings.Count(w, ".") == 2 && len(w) >= 30 {
			return "a JSON Web Token"
		}
	}
	for _, w := range words(v, isAlnumRune) {
		if len(w) == 20 && isUpperAlnum(w) {
			for _, p := range awsKeyIDPrefixes {
				if strings.HasPrefix(w, p) {
					return "an AWS access key id"
				}
			}
		}
	}
	return ""
}

// highEntropy reports the first run of v random enough to be a generated
// secret: its length and entropy in bits per character. Separators such as
// '-', '_', '.' and ':' end runs, so hyphenated names and UUIDs are judged
// piece by piece. A run counts as random when either
//   - it is at least minMixedRun base64 characters (letters, digits, '+',
//     '/', '=') with upper-case and lower-case letters (neither less than a
//     quarter of the letters, which rules out CamelCase identifiers) and
//     digits, and an entropy within mixedEntropySlack of what a random
//     base62 string of its length has (randomEntropy); or
//   - it is at least minSingleCaseRun letters and digits of one case (at
//     least 4 of each: hex digests, lower-case tokens) with an entropy of
//     minSingleCaseEntropy or more.
func highEntropy(v string) (n int, bits float64, ok bool) {
	for _, w := range words(v, isBase64Rune) {
		if len(w) < minMixedRun {
			continue
		}
		upper, lower, digit := classes(w)
		letters := upper + lower
		if upper == 0 || lower == 0 || digit == 0 || 4*upper < letters || 4*lower < letters {
			continue
		}
		if h := shannon(w); h >= randomEntropy(len(w))-mixedEntropySlack {
			return len(w), h, true
		}
	}
	for _, w := range words(v, isAlnumRune) {
		if len(w) < minSingleCaseRun {
			continue
		}
		upper, lower, digit := classes(w)
		if upper > 0 && lower > 0 || upper+lower < 4 || digit < 4 {
			continue
		}
		if h := shannon(w); h >= minSingleCaseEntropy {
			return len(w), h, true
		}
	}
	return 0, 0, false
}

// randomEntropy approximates the entropy, in bits per character, of a
// random base62 string of n characters: log2 of the number of distinct
// characters it is expected to have.
func randomEntropy(n int) float64 {
	const k = 62
	return math.Log2(k * (1 - math.Pow(1-1.0/k, float64(n))))
}

// classes counts the upper-case letters, lower-case letters and digits of
// s.
func classes(s string) (upper, lower, digit int) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'A' <= c && c <= 'Z':
			upper++
		case 'a' <= c && c <= 'z':
			lower++
		case '0' <= c && c <= '9':
			digit++
		}
	}
	return upper, lower, digit
}

// shannon is the entropy of s in bits per character (byte).
func shannon(s string) float64 {
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	n := float64(len(s))
	var h float64
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}

// words splits s into maximal runs of bytes that in accepts.
func words(s string, in func(byte) bool) []string {
	var out []string
	start := -1
	for i := 0; i <= len(s); i++ {
		if i < len(s) && in(s[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			out = append(out, s[start:i])
			start = -1
		}
	}
	return out
}

func isAlnumRune(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isBase64Rune(c byte) bool { return isAlnumRune(c) || c == '+' || c == '/' || c == '=' }

// isTokenWordRune: the characters of service tokens, prefixes included.
func isTokenWordRune(c byte) bool { return isAlnumRune(c) || c == '.' || c == '_' || c == '-' }

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isAlnumRune(s[i]) {
			return false
		}
	}
	return s != ""
}

func isUpperAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
