package httpapi

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Role is what a bearer token may do. Admin implies Reader.
type Role int

// Roles, weakest first.
const (
	RoleNone Role = iota
	RoleReader
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleReader:
		return "reader"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

func parseRole(s string) (Role, error) {
	switch s {
	case "reader":
		return RoleReader, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("unknown role %q (want admin or reader)", s)
}

// Token is one accepted bearer token. Name identifies it in audit records
// (updated_by) and logs; the token itself is never logged.
type Token struct {
	Role  Role
	Name  string
	Value string
}

// Tokens authenticates bearer tokens. Its zero value accepts nothing.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	role Role
	name string
	sum  [sha256.Size]byte
}

// NewTokens returns the authenticator for the given tokens. Empty values are
// an error: an empty token would let anyone in.
func NewTokens(tokens ...Token) (*Tokens, error) {
	ts := &Tokens{}
	for i, t := range tokens {
		if t.Value == "" {
			return nil, fmt.Errorf("token %d (%s): empty token", i+1, t.Role)
		}
		if t.Role != RoleAdmin && t.Role != RoleReader {
			return nil, fmt.Errorf("token %d: unknown role", i+1)
		}
		name := t.Name
		if name == "" {
			name = fmt.Sprintf("%s-token-%d", t.Role, i+1)
		}
		ts.entries = append(ts.entries, tokenEntry{role: t.Role, name: name, sum: sha256.Sum256([]byte(t.Value))})
	}
	return ts, nil
}

// Len reports how many tokens are accepted.
func (ts *Tokens) Len() int { return len(ts.entries) }

// Authenticate returns the role and name of the token, or RoleNone. It
// compares SHA-256 digests in constant time and always looks at every entry,
// so neither the token's length nor which entry matched leaks through timing.
func (ts *Tokens) Authenticate(token string) (Role, string) {
	sum := sha256.Sum256([]byte(token))
	role, name := RoleNone, ""
	for _, e := range ts.entries {
		if subtle.ConstantTimeCompare(sum[:], e.sum[:]) == 1 {
			role, name = e.role, e.name
		}
	}
	return role, name
}

// LoadTokens gathers tokens from a tokens file (path may be "") and the
// TCS_ADMIN_TOKEN and TCS_READER_TOKEN variables read through getenv.
//
// The file has one token per line: `ROLE TOKEN [NAME]`, where ROLE is admin
// or reader and NAME (optional) is what audit records show as updated_by.
// Blank lines and lines starting with # are ignored. Finding no token at all
// is an error: an admin API nobody can call is a misconfiguration.
func LoadTokens(path string, getenv func(string) string) (*Tokens, error) {
	tokens, err := LoadTokenList(path, getenv)
	if err != nil {
		return nil, err
	}
	return NewTokens(tokens...)
}

// LoadTokenList gathers tokens as LoadTokens does and returns them as they
// are, for a process that also hands some to other servers (tcs-dev gives
// its admin tokens to its lookup servers' replica admin API).
func LoadTokenList(path string, getenv func(string) string) ([]Token, error) {
	var tokens []Token
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("tokens file: %w", err)
		}
		defer f.Close()
		tokens, err = parseTokens(f, path)
		if err != nil {
			return nil, err
		}
	}
	if v := getenv("TCS_ADMIN_TOKEN"); v != "" {
		tokens = append(tokens, Token{Role: RoleAdmin, Name: "admin", Value: v})
	}
	if v := getenv("TCS_READER_TOKEN"); v != "" {
		tokens = append(tokens, Token{Role: RoleReader, Name: "reader", Value: v})
	}
	if len(tokens) == 0 {
		return nil, errors.New("no API tokens configured: set TCS_ADMIN_TOKEN (and TCS_READER_TOKEN), or a tokens file (--tokens-file or TCS_TOKENS_FILE)")
	}
	return tokens, nil
}

func parseTokens(r io.Reader, path string) ([]Token, error) {
	var tokens []Token
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("%s:%d: want `ROLE TOKEN [NAME]`, got %d fields", path, n, len(f))
		}
		role, err := parseRole(f[0])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		t := Token{Role: role, Value: f[1]}
		if len(f) == 3 {
			t.Name = f[2]
		}
		tokens = append(tokens, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tokens, nil
}
