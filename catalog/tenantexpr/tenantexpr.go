// Package tenantexpr is a small, side-effect-free boolean expression
// language over a tenant's JSON document: the --where of tcsctl transform.
//
// It is ours rather than CEL (cel-go) on purpose: its paths are checked
// against the tenant's fields when parsed (a typo is an error, not a
// condition that matches nothing), it reads the document exactly as the
// catalog's API shows it, it cannot loop and its regular expressions are
// RE2, and it costs no dependency (cel-go brings ANTLR and protobuf
// descriptors for a language far larger than a filter needs). Its syntax is
// what tcsctl users already write; changing language would break their
// scripts.
//
// The grammar:
//
//	expr    = or
//	or      = and { "||" and }
//	and     = unary { "&&" unary }
//	unary   = "!" unary | compare
//	compare = operand [ op operand ]
//	op      = "==" | "!=" | "<" | "<=" | ">" | ">=" | "=~" | "!~" | "in" | "contains"
//	operand = path | string | number | "true" | "false" | "null" | list | "(" expr ")"
//	list    = "[" [ literal { "," literal } ] "]"
//	path    = name { "." name }        name = [A-Za-z0-9_-]+ (a number indexes a list)
//
// A path reads the document as the catalog's API shows it (database.host,
// products.jira.users, labels.tier, hostnames.0); a missing one is null.
// Its first name must be a tenant field, and under database a database
// field, so that a typo is an error rather than a condition that matches
// nothing. Strings are "double" or 'single' quoted with backslash escapes.
//
// == and != compare any two values (different types are unequal; numbers
// compare as numbers); < <= > >= need two numbers or two strings; =~ and !~
// match a string against an RE2 regular expression (linear time: no
// catastrophic backtracking); "in" tests membership of a list; "contains"
// tests that a list has an element, an object a key, or a string a
// substring. && || ! need booleans. Evaluation reads nothing but the
// document and cannot loop.
package tenantexpr

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// node is a parsed expression or part of one.
type node interface {
	eval(doc map[string]any) (any, error)
	String() string
}

// MaxLen and MaxDepth bound what Parse accepts: the length of the source
// in bytes, and how deeply expressions nest.
const (
	MaxLen   = 4096
	MaxDepth = 64
)

// tenantFields are the top-level names a path may start with; the nested
// maps list the names allowed beneath (nil: any).
var tenantFields = map[string]map[string]bool{
	"id": {}, "hostnames": nil, "status": {}, "products": nil, "region": {}, "labels": nil,
	"version": {}, "updated_at": {}, "updated_by": {},
	"database": {"engine": true, "host": true, "port": true, "name": true, "region": true, "secret_ref": true},
}

// CheckPath rejects a path (a field name, then names beneath it) that
// cannot name part of a tenant document.
func CheckPath(p []string) error {
	sub, ok := tenantFields[p[0]]
	if !ok {
		return fmt.Errorf("unknown field %q (fields: database, hostnames, id, labels, products, region, status, updated_at, updated_by, version)", p[0])
	}
	if len(p) > 1 && sub != nil {
		if len(sub) == 0 {
			return fmt.Errorf("%s has no field %q", p[0], p[1])
		}
		if !sub[p[1]] {
			return fmt.Errorf("%s has no field %q", p[0], p[1])
		}
		if len(p) > 2 {
			return fmt.Errorf("%s.%s has no field %q", p[0], p[1], p[2])
		}
	}
	return nil
}

// Expr is a parsed expression. Its methods are safe for concurrent use.
type Expr struct{ root node }

// Parse parses an expression.
func Parse(src string) (*Expr, error) {
	if len(src) > MaxLen {
		return nil, fmt.Errorf("expression is longer than %d bytes", MaxLen)
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &exprParser{toks: toks}
	e, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		return nil, fmt.Errorf("unexpected %s at offset %d", t, t.pos)
	}
	return &Expr{e}, nil
}

// String is the expression in a canonical form that Parse reads back as
// the same expression.
func (e *Expr) String() string { return e.root.String() }

// Match evaluates the expression as a condition on doc, a tenant's JSON
// document decoded into maps (as encoding/json decodes into any). An
// expression that is not true or false on doc is an error.
func (e *Expr) Match(doc map[string]any) (bool, error) { return matches(e.root, doc) }

// matches evaluates n as a condition.
func matches(n node, doc map[string]any) (bool, error) {
	v, err := n.eval(doc)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("%s is %s, not true or false", n, describe(v))
	}
	return b, nil
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokName
	tokString
	tokNumber
	tokOp
)

type token struct {
	kind tokKind
	text string
	pos  int
	num  float64
}

func (t token) String() string {
	switch t.kind {
	case tokEOF:
		return "end of expression"
	case tokString:
		return strconv.Quote(t.text)
	}
	return "'" + t.text + "'"
}

func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '\'':
			start := i
			var b strings.Builder
			i++
			for {
				if i >= len(src) {
					return nil, fmt.Errorf("unterminated string at offset %d", start)
				}
				if src[i] == c {
					i++
					break
				}
				if src[i] == '\\' && i+1 < len(src) {
					i++
					switch src[i] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					default:
						b.WriteByte(src[i])
					}
					i++
					continue
				}
				b.WriteByte(src[i])
				i++
			}
			toks = append(toks, token{kind: tokString, text: b.String(), pos: start})
		case c == '-' && i+1 < len(src) && isDigit(src[i+1]) || isDigit(c):
			start := i
			i++
			for i < len(src) && (isDigit(src[i]) || src[i] == '.' || src[i] == '_' || isLetter(src[i]) || src[i] == '-' ||
				src[i] == '+' && (src[i-1] == 'e' || src[i-1] == 'E')) {
				i++
			}
			text := src[start:i]
			if n, err := strconv.ParseFloat(text, 64); err == nil {
				toks = append(toks, token{kind: tokNumber, text: text, pos: start, num: n})
			} else {
				// A path segment such as products.jira-2 continues a name.
				toks = append(toks, token{kind: tokName, text: text, pos: start})
			}
		case isLetter(c) || c == '_':
			start := i
			for i < len(src) && (isLetter(src[i]) || isDigit(src[i]) || src[i] == '_' || src[i] == '-' || src[i] == '.') {
				i++
			}
			toks = append(toks, token{kind: tokName, text: src[start:i], pos: start})
		default:
			start := i
			two := ""
			if i+1 < len(src) {
				two = src[i : i+2]
			}
			switch two {
			case "==", "!=", "<=", ">=", "&&", "||", "=~", "!~":
				toks = append(toks, token{kind: tokOp, text: two, pos: start})
				i += 2
				continue
			}
			switch c {
			case '<', '>', '!', '(', ')', '[', ']', ',':
				toks = append(toks, token{kind: tokOp, text: string(c), pos: start})
				i++
			default:
				r := []rune(src[i:])[0]
				if unicode.IsPrint(r) {
					return nil, fmt.Errorf("unexpected character %q at offset %d", r, i)
				}
				return nil, fmt.Errorf("unexpected character %U at offset %d", r, i)
			}
		}
	}
	return append(toks, token{kind: tokEOF, pos: len(src)}), nil
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

type exprParser struct {
	toks []token
	i    int
}

func (p *exprParser) peek() token { return p.toks[p.i] }
func (p *exprParser) next() token { t := p.toks[p.i]; p.i++; return t }

func (p *exprParser) isOp(text string) bool {
	t := p.peek()
	return (t.kind == tokOp || t.kind == tokName) && t.text == text
}

func (p *exprParser) or(depth int) (node, error) {
	if depth > MaxDepth {
		return nil, errors.New("expression nests too deeply")
	}
	l, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.isOp("||") {
		p.next()
		r, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		l = &logical{op: "||", l: l, r: r}
	}
	return l, nil
}

func (p *exprParser) and(depth int) (node, error) {
	l, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.isOp("&&") {
		p.next()
		r, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		l = &logical{op: "&&", l: l, r: r}
	}
	return l, nil
}

func (p *exprParser) unary(depth int) (node, error) {
	if depth > MaxDepth {
		return nil, errors.New("expression nests too deeply")
	}
	if p.isOp("!") {
		p.next()
		e, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &not{e}, nil
	}
	return p.compare(depth)
}

var compareOps = []string{"==", "!=", "<", "<=", ">", ">=", "=~", "!~", "in", "contains"}

func (p *exprParser) compare(depth int) (node, error) {
	l, err := p.operand(depth)
	if err != nil {
		return nil, err
	}
	for _, op := range compareOps {
		if !p.isOp(op) {
			continue
		}
		opTok := p.next()
		r, err := p.operand(depth)
		if err != nil {
			return nil, err
		}
		c := &comparison{op: op, l: l, r: r}
		if op == "=~" || op == "!~" {
			var s string
			isStr := false
			if lit, ok := r.(*literal); ok {
				s, isStr = lit.v.(string)
			}
			if !isStr {
				return nil, fmt.Errorf("%s at offset %d needs a string literal (a regular expression) on its right", op, opTok.pos)
			}
			if c.re, err = regexp.Compile(s); err != nil {
				return nil, fmt.Errorf("regular expression %q: %v", s, err)
			}
		}
		if op == "in" {
			if _, ok := r.(*list); !ok {
				return nil, fmt.Errorf("'in' at offset %d needs a list on its right, such as [\"a\", \"b\"]", opTok.pos)
			}
		}
		return c, nil
	}
	return l, nil
}

func (p *exprParser) operand(depth int) (node, error) {
	t := p.next()
	switch t.kind {
	case tokString:
		return &literal{v: t.text}, nil
	case tokNumber:
		return &literal{v: t.num}, nil
	case tokName:
		switch t.text {
		case "true":
			return &literal{v: true}, nil
		case "false":
			return &literal{v: false}, nil
		case "null":
			return &literal{v: nil, isNull: true}, nil
		case "in", "contains":
			return nil, fmt.Errorf("unexpected %s at offset %d", t, t.pos)
		}
		parts := strings.Split(t.text, ".")
		for _, s := range parts {
			if s == "" {
				return nil, fmt.Errorf("bad path %q at offset %d", t.text, t.pos)
			}
		}
		if err := CheckPath(parts); err != nil {
			return nil, fmt.Errorf("path %q at offset %d: %v", t.text, t.pos, err)
		}
		return &path{parts: parts}, nil
	case tokOp:
		switch t.text {
		case "(":
			e, err := p.or(depth + 1)
			if err != nil {
				return nil, err
			}
			if !p.isOp(")") {
				return nil, fmt.Errorf("expected ')' at offset %d, found %s", p.peek().pos, p.peek())
			}
			p.next()
			return &group{e}, nil
		case "[":
			l := &list{}
			for !p.isOp("]") {
				if len(l.items) > 0 {
					if !p.isOp(",") {
						return nil, fmt.Errorf("expected ',' or ']' at offset %d, found %s", p.peek().pos, p.peek())
					}
					p.next()
				}
				e, err := p.operand(depth + 1)
				if err != nil {
					return nil, err
				}
				lit, ok := e.(*literal)
				if !ok {
					return nil, fmt.Errorf("a list holds only literals; found %s", e)
				}
				l.items = append(l.items, lit.v)
			}
			p.next()
			return l, nil
		}
	}
	return nil, fmt.Errorf("unexpected %s at offset %d", t, t.pos)
}

type literal struct {
	v      any
	isNull bool
}

func (l *literal) eval(map[string]any) (any, error) { return l.v, nil }
func (l *literal) String() string                   { return formatLiteral(l.v) }

// formatLiteral writes a literal back in the language's own syntax.
func formatLiteral(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i < len(x); i++ {
			switch c := x[i]; c {
			case '"', '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case '\n':
				b.WriteString(`\n`)
			case '\t':
				b.WriteString(`\t`)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
		return b.String()
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

type list struct{ items []any }

func (l *list) eval(map[string]any) (any, error) { return l.items, nil }
func (l *list) String() string {
	parts := make([]string, len(l.items))
	for i, it := range l.items {
		parts[i] = formatLiteral(it)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

type path struct{ parts []string }

func (p *path) String() string { return strings.Join(p.parts, ".") }
func (p *path) eval(doc map[string]any) (any, error) {
	return lookupPath(doc, p.parts), nil
}

// lookupPath reads a dotted path in a JSON value; missing parts are nil.
func lookupPath(v any, parts []string) any {
	for _, s := range parts {
		switch c := v.(type) {
		case map[string]any:
			v = c[s]
		case []any:
			i, err := strconv.Atoi(s)
			if err != nil || i < 0 || i >= len(c) {
				return nil
			}
			v = c[i]
		default:
			return nil
		}
	}
	return v
}

type group struct{ e node }

func (g *group) eval(doc map[string]any) (any, error) { return g.e.eval(doc) }
func (g *group) String() string                       { return "(" + g.e.String() + ")" }

type not struct{ e node }

func (n *not) String() string { return "!" + n.e.String() }
func (n *not) eval(doc map[string]any) (any, error) {
	b, err := matches(n.e, doc)
	return !b, err
}

type logical struct {
	op   string
	l, r node
}

func (l *logical) String() string { return l.l.String() + " " + l.op + " " + l.r.String() }
func (l *logical) eval(doc map[string]any) (any, error) {
	a, err := matches(l.l, doc)
	if err != nil {
		return nil, err
	}
	if (l.op == "&&" && !a) || (l.op == "||" && a) {
		return a, nil
	}
	return matches(l.r, doc)
}

type comparison struct {
	op   string
	l, r node
	re   *regexp.Regexp
}

func (c *comparison) String() string { return c.l.String() + " " + c.op + " " + c.r.String() }

func (c *comparison) eval(doc map[string]any) (any, error) {
	a, err := c.l.eval(doc)
	if err != nil {
		return nil, err
	}
	b, err := c.r.eval(doc)
	if err != nil {
		return nil, err
	}
	switch c.op {
	case "==":
		return jsonEqual(a, b), nil
	case "!=":
		return !jsonEqual(a, b), nil
	case "=~", "!~":
		s, ok := a.(string)
		m := ok && c.re.MatchString(s)
		return m == (c.op == "=~"), nil
	case "in":
		for _, x := range b.([]any) {
			if jsonEqual(a, x) {
				return true, nil
			}
		}
		return false, nil
	case "contains":
		switch x := a.(type) {
		case []any:
			for _, el := range x {
				if jsonEqual(el, b) {
					return true, nil
				}
			}
			return false, nil
		case map[string]any:
			k, ok := b.(string)
			if !ok {
				return nil, fmt.Errorf("%s: an object's keys are strings, not %s", c, describe(b))
			}
			_, has := x[k]
			return has, nil
		case string:
			k, ok := b.(string)
			if !ok {
				return nil, fmt.Errorf("%s: a string contains strings, not %s", c, describe(b))
			}
			return strings.Contains(x, k), nil
		case nil:
			return false, nil
		}
		return nil, fmt.Errorf("%s: %s cannot contain anything", c, describe(a))
	}
	// Ordering.
	var cmp int
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		if !ok {
			return nil, fmt.Errorf("%s: cannot order %s and %s", c, describe(a), describe(b))
		}
		cmp = compareFloat(x, y)
	case string:
		y, ok := b.(string)
		if !ok {
			return nil, fmt.Errorf("%s: cannot order %s and %s", c, describe(a), describe(b))
		}
		cmp = strings.Compare(x, y)
	default:
		if a == nil || b == nil {
			return false, nil // a missing field is neither less nor greater
		}
		return nil, fmt.Errorf("%s: cannot order %s and %s", c, describe(a), describe(b))
	}
	switch c.op {
	case "<":
		return cmp < 0, nil
	case "<=":
		return cmp <= 0, nil
	case ">":
		return cmp > 0, nil
	}
	return cmp >= 0, nil
}

func compareFloat(x, y float64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// jsonEqual compares two decoded JSON values.
func jsonEqual(a, b any) bool { return reflect.DeepEqual(a, b) }

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "a string " + strconv.Quote(x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
