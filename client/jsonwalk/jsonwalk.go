// Package jsonwalk walks JSON text without decoding it: the members of an
// object and the elements of an array are handed out as raw byte spans of
// the input, so a reader that wants two fields of a large frame pays for
// neither reflection nor allocation. The Go client's fast path
// (client.Options.OnRoomEvent, for parley.v1.json) and the load tool's
// Centrifugo adapter use it.
//
// It checks structure (balanced brackets, terminated strings) but is not a
// validator: it accepts some texts encoding/json would refuse (bad number
// syntax, say). Use it on frames from a server you trust to speak JSON.
package jsonwalk

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
)

// ErrSyntax is returned for text that is not a JSON object or array where
// one was expected, or that ends early.
var ErrSyntax = errors.New("jsonwalk: malformed JSON")

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// stringEnd returns the index just past the string that starts at b[i]
// (a quote) and whether it holds an escape. It jumps from quote to quote
// (bytes.IndexByte), so long strings cost little: a quote ends the string
// unless an odd number of backslashes precedes it.
func stringEnd(b []byte, i int) (int, bool, error) {
	escaped := false
	for j := i + 1; j <= len(b); {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			break
		}
		q := j + k
		if !escaped && bytes.IndexByte(b[j:q], '\\') >= 0 {
			escaped = true
		}
		n := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, escaped, nil
		}
		j = q + 1
	}
	return 0, false, ErrSyntax
}

// valueEnd returns the index just past the value that starts at b[i].
func valueEnd(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, ErrSyntax
	}
	switch b[i] {
	case '"':
		end, _, err := stringEnd(b, i)
		return end, err
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _, err := stringEnd(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, ErrSyntax
	default: // number, true, false, null
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if j == i {
					return 0, ErrSyntax
				}
				return j, nil
			}
			j++
		}
		if j == i {
			return 0, ErrSyntax
		}
		return j, nil
	}
}

// Object calls fn with the raw key (quotes removed, escapes kept) and the
// raw value of each member of the object b, in order, until fn returns
// false.
func Object(b []byte, fn func(key, value []byte) bool) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return ErrSyntax
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return ErrSyntax
		}
		kend, _, err := stringEnd(b, i)
		if err != nil {
			return err
		}
		key := b[i+1 : kend-1]
		i = skipSpace(b, kend)
		if i >= len(b) || b[i] != ':' {
			return ErrSyntax
		}
		i = skipSpace(b, i+1)
		vend, err := valueEnd(b, i)
		if err != nil {
			return err
		}
		if !fn(key, b[i:vend]) {
			return nil
		}
		i = skipSpace(b, vend)
		if i >= len(b) {
			return ErrSyntax
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return nil
		default:
			return ErrSyntax
		}
	}
}

// Array calls fn with each raw element of the array b, in order, until fn
// returns false.
func Array(b []byte, fn func(elem []byte) bool) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return ErrSyntax
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil
	}
	for {
		vend, err := valueEnd(b, i)
		if err != nil {
			return err
		}
		if !fn(b[i:vend]) {
			return nil
		}
		i = skipSpace(b, vend)
		if i >= len(b) {
			return ErrSyntax
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			return nil
		default:
			return ErrSyntax
		}
	}
}

// String returns the contents of the raw JSON string v. Without escapes it
// is a sub-slice of v (no copy); with escapes it is decoded into a new
// slice.
func String(v []byte) ([]byte, error) {
	if len(v) < 2 || v[0] != '"' {
		return nil, ErrSyntax
	}
	end, escaped, err := stringEnd(v, 0)
	if err != nil || end != len(v) {
		return nil, ErrSyntax
	}
	if !escaped {
		return v[1 : len(v)-1], nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// Uint parses the raw value v as an unsigned integer, written as a number
// or (as protojson writes 64-bit integers) as a decimal string.
func Uint(v []byte) (uint64, error) {
	if len(v) >= 2 && v[0] == '"' {
		v = v[1 : len(v)-1]
	}
	var n uint64
	if len(v) == 0 {
		return 0, ErrSyntax
	}
	if len(v) > 19 { // might overflow: let strconv say
		return strconv.ParseUint(string(v), 10, 64)
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return strconv.ParseUint(string(v), 10, 64)
		}
		n = n*10 + uint64(c-'0')
	}
	return n, nil
}

// Int parses the raw value v as a signed integer, as a number or a
// decimal string.
func Int(v []byte) (int64, error) {
	if len(v) >= 2 && v[0] == '"' {
		v = v[1 : len(v)-1]
	}
	if len(v) > 0 && v[0] == '-' {
		n, err := Uint(v[1:])
		return -int64(n), err
	}
	n, err := Uint(v)
	return int64(n), err
}
