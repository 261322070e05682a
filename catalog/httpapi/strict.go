package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// MaxJSONDepth bounds how deeply a request body's objects and arrays may
// nest. A tenant document nests four levels; encoding/json would follow a
// body of nothing but brackets 10,000 levels down.
const MaxJSONDepth = 32

// checkJSON is the part of strict decoding encoding/json does not do. It
// walks body's tokens and refuses, with a 400 naming the key's path:
//   - a key that appears twice in one object, at any level (encoding/json
//     keeps the last, so what a reviewer reads in a request and what is
//     stored could differ);
//   - a key of a known object that matches a field only when case is
//     ignored ("Hostnames"), which encoding/json would accept;
//   - nesting deeper than MaxJSONDepth.
//
// schema is the Go type the body decodes into: it says which objects have
// fixed keys (structs) and which any (maps); a type with its own
// UnmarshalJSON checks its own keys (tenant.ParseDatabase does). Keys
// unknown in every spelling are left to DisallowUnknownFields. Syntax
// errors are left to the decoder too, which describes them better.
func checkJSON(body []byte, schema reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	err := walkJSON(dec, schema, "", 0)
	if _, ok := err.(*tenant.Error); ok {
		return err
	}
	return nil
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// walkJSON reads one value from dec. t is its Go type (nil: anything).
func walkJSON(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth++; depth > MaxJSONDepth {
		return requestError(codeMalformed, path, fmt.Sprintf("JSON nests deeper than %d levels", MaxJSONDepth))
	}
	t = schemaOf(t)
	switch delim {
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := walkJSON(dec, elem, path+"["+strconv.Itoa(i)+"]", depth); err != nil {
				return err
			}
		}
	case '{':
		var fields map[string]reflect.Type
		var elem reflect.Type
		switch {
		case t == nil:
		case t.Kind() == reflect.Struct:
			fields = jsonFields(t)
		case t.Kind() == reflect.Map:
			elem = t.Elem()
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := tok.(string)
			field := keyPath(path, key)
			if seen[key] {
				return requestError(codeMalformed, field, "duplicate key: each key may appear once in an object")
			}
			seen[key] = true
			vt := elem
			if fields != nil {
				var known bool
				vt, known = fields[key]
				if !known {
					for name := range fields {
						if strings.EqualFold(name, key) {
							return requestError(codeMalformed, field, fmt.Sprintf("unknown field; keys are case-sensitive: did you mean %q?", name))
						}
					}
				}
			}
			if err := walkJSON(dec, vt, field, depth); err != nil {
				return err
			}
		}
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

// schemaOf is t without pointers, or nil when t's values may hold anything
// or check their own keys (types with an UnmarshalJSON method).
func schemaOf(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() == reflect.Interface || t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	return t
}

// fieldCache holds jsonFields' answers: the request types are few.
var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

// jsonFields returns the JSON names of struct t's fields and their types,
// as encoding/json resolves them: a field of t hides one of the same name
// promoted from an embedded struct.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	f := structFields(t)
	fieldCache.Store(t, f)
	return f
}

func structFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	var embedded []reflect.Type
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				embedded = append(embedded, ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	for _, et := range embedded {
		for name, ft := range structFields(et) {
			if _, hidden := out[name]; !hidden {
				out[name] = ft
			}
		}
	}
	return out
}

// keyPath names key inside path the way tenant errors name fields:
// "products.jira", or `labels["app.kubernetes.io/name"]` for keys that are
// not plain words.
func keyPath(path, key string) string {
	plain := key != ""
	for i := 0; i < len(key) && plain; i++ {
		c := key[i]
		plain = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
	}
	switch {
	case !plain:
		return path + "[" + strconv.Quote(truncate(key, 64)) + "]"
	case path == "":
		return key
	}
	return path + "." + key
}

// truncate shortens s to at most n bytes (on a rune boundary), marking the
// cut, so that a hostile key or path does not fill an answer or a log line.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
