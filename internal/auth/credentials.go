package auth

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// MinTokenBytes is the shortest token accepted in plaintext (from the
// environment): 32 bytes, 256 bits when random. Tokens issued by NewToken
// are 32 random bytes, 43 characters of base64url.
const MinTokenBytes = 32

// The development tokens of `make run`. They are accepted only while every
// server of the process binds a loopback address (see CheckBind), since
// everybody knows them.
const (
	DevAdminToken  = "dev-admin-token"
	DevReaderToken = "dev-reader-token"
	DevLookupToken = "dev-lookup-token"
	DevScanToken   = "dev-scan-token"
)

// DevTokens maps each role to its development token.
var DevTokens = map[Role]string{Admin: DevAdminToken, Reader: DevReaderToken, Lookup: DevLookupToken, ReplicaScan: DevScanToken}

// EnvTokenVars names the environment variable that may hold a plaintext
// token of each role (for development and tests; production configures
// digests in a credentials file).
var EnvTokenVars = map[Role]string{Admin: "TCS_ADMIN_TOKEN", Reader: "TCS_READER_TOKEN", Lookup: "TCS_LOOKUP_TOKEN", ReplicaScan: "TCS_SCAN_TOKEN"}

func isDevToken(token string) bool {
	for _, d := range DevTokens {
		if subtle.ConstantTimeCompare([]byte(token), []byte(d)) == 1 {
			return true
		}
	}
	return false
}

// NewToken returns a new random token: 32 bytes from crypto/rand in
// unpadded base64url.
func NewToken() (string, error) {
	b := make([]byte, MinTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("new token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Digest returns a token's digest as the credentials file holds it:
// "sha256:" and 64 lower-case hex digits.
func Digest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Line returns the credentials file line for a token.
func Line(role Role, token, name string) string {
	return string(role) + " " + Digest(token) + " " + name
}

// PlainToken is a token given in plaintext (from the environment), with the
// role it grants and the name audit records show.
type PlainToken struct {
	Role  Role
	Name  string
	Token string
}

// EnvTokens returns the plaintext tokens of the given roles' variables in
// EnvTokenVars, each named after its variable.
func EnvTokens(getenv func(string) string, roles ...Role) []PlainToken {
	var out []PlainToken
	for _, r := range roles {
		v := EnvTokenVars[r]
		if tok := getenv(v); tok != "" {
			out = append(out, PlainToken{Role: r, Name: v, Token: tok})
		}
	}
	return out
}

// Set is one immutable set of credentials: token digests and the client
// certificate allow-list, each with its role and unique name. Its zero
// value accepts nothing.
type Set struct {
	tokens map[[sha256.Size]byte]Identity // SHA-256 of the token → identity
	certs  map[string]Identity            // principal ("dns:…", "uri:…", "cn:…") → identity
	dev    bool
}

// Len reports how many credentials the set holds.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.tokens) + len(s.certs)
}

// HasDevToken reports whether the set accepts one of the development
// tokens (given in plaintext, or its digest in a file).
func (s *Set) HasDevToken() bool { return s != nil && s.dev }

// Roles returns the roles the set grants, in the order of Roles.
func (s *Set) Roles() []Role {
	has := map[Role]bool{}
	if s != nil {
		for _, id := range s.tokens {
			has[id.Role] = true
		}
		for _, id := range s.certs {
			has[id.Role] = true
		}
	}
	var out []Role
	for _, r := range Roles {
		if has[r] {
			out = append(out, r)
		}
	}
	return out
}

// Token returns the identity of a bearer token. It looks the token's
// SHA-256 digest up, never the token itself: how long the lookup takes
// depends on the digest only, which tells an attacker nothing about any
// token (finding a token from bits of its digest is finding a SHA-256
// preimage), and the cost does not grow with the number of credentials.
func (s *Set) Token(token string) (Identity, bool) {
	if s == nil || token == "" {
		return Identity{}, false
	}
	id, ok := s.tokens[sha256.Sum256([]byte(token))]
	return id, ok
}

// Cert returns the identity of a verified client certificate: the entry of
// its URI SANs, DNS SANs or subject common name that the allow-list holds.
// A certificate that matches entries of two different identities is
// refused: which one it is would be a guess.
func (s *Set) Cert(cert *x509.Certificate) (Identity, bool) {
	if s == nil || cert == nil || len(s.certs) == 0 {
		return Identity{}, false
	}
	var (
		id    Identity
		found bool
	)
	match := func(principal string) bool {
		got, ok := s.certs[principal]
		if !ok {
			return true
		}
		if found && got != id {
			return false
		}
		id, found = got, true
		return true
	}
	for _, u := range cert.URIs {
		if !match("uri:" + u.String()) {
			return Identity{}, false
		}
	}
	for _, d := range cert.DNSNames {
		if !match("dns:" + strings.ToLower(d)) {
			return Identity{}, false
		}
	}
	if cert.Subject.CommonName != "" && !match("cn:"+cert.Subject.CommonName) {
		return Identity{}, false
	}
	return id, found
}

// builder assembles a Set and checks what makes one ambiguous: a name used
// twice, a token or certificate principal listed twice.
type builder struct {
	set    Set
	names  map[string]string // name → where it was given
	sums   map[[sha256.Size]byte]string
	places map[string]string // principal → where
}

func newBuilder() *builder {
	return &builder{set: Set{tokens: map[[sha256.Size]byte]Identity{}, certs: map[string]Identity{}}, names: map[string]string{}, sums: map[[sha256.Size]byte]string{}, places: map[string]string{}}
}

func (b *builder) name(where, name string) error {
	if prev, ok := b.names[name]; ok {
		return fmt.Errorf("%s: name %q is already used by %s: give each person or service its own name", where, name, prev)
	}
	b.names[name] = where
	return nil
}

func (b *builder) token(where string, sum [sha256.Size]byte, id Identity) error {
	if prev, ok := b.sums[sum]; ok {
		return fmt.Errorf("%s: the same token is already listed by %s: a token has one role and one name", where, prev)
	}
	if err := b.name(where, id.Name); err != nil {
		return err
	}
	b.sums[sum] = where
	for _, d := range DevTokens {
		if sha256.Sum256([]byte(d)) == sum {
			b.set.dev = true
		}
	}
	b.set.tokens[sum] = id
	return nil
}

func (b *builder) cert(where, principal string, id Identity) error {
	if prev, ok := b.places[principal]; ok {
		return fmt.Errorf("%s: certificate %s is already listed by %s", where, principal, prev)
	}
	if err := b.name(where, id.Name); err != nil {
		return err
	}
	b.places[principal] = where
	b.set.certs[principal] = id
	return nil
}

// Load builds the credential set of a server: the credentials file at path
// (none if path is "") and the plaintext tokens. Lines of roles not in
// serve are checked but left out, so a file shared by several servers
// grants each only what it serves; serve empty means every role.
func Load(path string, plain []PlainToken, serve ...Role) (*Set, error) {
	b := newBuilder()
	if path != "" {
		if err := b.file(path, serve); err != nil {
			return nil, err
		}
	}
	for _, p := range plain {
		where := "token " + p.Name
		if !p.Role.Valid() {
			return nil, fmt.Errorf("%s: unknown role %q", where, p.Role)
		}
		if p.Name == "" {
			return nil, fmt.Errorf("token of role %s: no name", p.Role)
		}
		if len(p.Token) < MinTokenBytes && !isDevToken(p.Token) {
			return nil, fmt.Errorf("%s: %d bytes; tokens must be at least %d bytes (tcsctl token new makes one)", where, len(p.Token), MinTokenBytes)
		}
		if !serves(serve, p.Role) {
			continue
		}
		if err := b.token(where, sha256.Sum256([]byte(p.Token)), Identity{Name: p.Name, Role: p.Role}); err != nil {
			return nil, err
		}
	}
	return &b.set, nil
}

func serves(serve []Role, r Role) bool {
	if len(serve) == 0 {
		return true
	}
	for _, s := range serve {
		if s == r {
			return true
		}
	}
	return false
}

// ErrFileMode is the error of a credentials file that group or others may
// read or write.
var ErrFileMode = errors.New("credentials file readable or writable by group or others")

func (b *builder) file(path string, serve []Role) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("credentials file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("credentials file: %w", err)
	}
	if mode := fi.Mode().Perm(); mode&0o077 != 0 {
		return fmt.Errorf("credentials file %s has mode %04o: %w (chmod 600 %s)", path, mode, ErrFileMode, path)
	}
	return b.parse(f, path, serve)
}

// Parse reads a credentials file's lines (see the package's README
// section): `ROLE sha256:HEX NAME` for a token, `ROLE cert:dns:NAME|uri:URI|cn:CN
// NAME` for a client certificate; blank lines and # comments are ignored.
// name says where the lines come from, for errors.
func Parse(r io.Reader, name string) (*Set, error) {
	b := newBuilder()
	if err := b.parse(r, name, nil); err != nil {
		return nil, err
	}
	return &b.set, nil
}

func (b *builder) parse(r io.Reader, path string, serve []Role) error {
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		where := fmt.Sprintf("%s:%d", path, n)
		f := strings.Fields(line)
		if len(f) != 3 {
			return fmt.Errorf("%s: want `ROLE sha256:<hex> NAME` or `ROLE cert:<dns|uri|cn>:<value> NAME`, got %d fields", where, len(f))
		}
		role, cred, name := Role(f[0]), f[1], f[2]
		if !role.Valid() {
			return fmt.Errorf("%s: unknown role %q (want admin, reader, lookup or replica-scan)", where, f[0])
		}
		id := Identity{Name: name, Role: role}
		switch {
		case strings.HasPrefix(cred, "sha256:"):
			raw, err := hex.DecodeString(cred[len("sha256:"):])
			if err != nil || len(raw) != sha256.Size {
				return fmt.Errorf("%s: digest %q: want sha256: and 64 hex digits", where, shorten(cred))
			}
			if !serves(serve, role) {
				continue
			}
			if err := b.token(where, [sha256.Size]byte(raw), id); err != nil {
				return err
			}
		case strings.HasPrefix(cred, "cert:"):
			principal, err := parsePrincipal(cred[len("cert:"):])
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			if !serves(serve, role) {
				continue
			}
			if err := b.cert(where, principal, id); err != nil {
				return err
			}
		default:
			// Never echo the field: it may be a token pasted by mistake.
			return fmt.Errorf("%s: the second field must be sha256:<hex> (a token's digest, never the token: `tcsctl token digest` prints it) or cert:<dns|uri|cn>:<value>", where)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func parsePrincipal(p string) (string, error) {
	kind, v, ok := strings.Cut(p, ":")
	if !ok || v == "" {
		return "", fmt.Errorf("certificate %q: want cert:dns:<name>, cert:uri:<uri> or cert:cn:<common name>", p)
	}
	switch kind {
	case "dns":
		return "dns:" + strings.ToLower(v), nil
	case "uri", "cn":
		return kind + ":" + v, nil
	}
	return "", fmt.Errorf("certificate %q: kind %q: want dns, uri or cn", p, kind)
}

func shorten(s string) string {
	if len(s) > 20 {
		return s[:20] + "…"
	}
	return s
}
