package jsonwalk

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestObjectAndArray(t *testing.T) {
	in := []byte(` { "a" : 1, "b":"x\"y}", "c":{"d":[1,{"e":"]"}],"f":null}, "g":[ ], "h":-2.5e3 , "i":true}`)
	var keys []string
	vals := map[string]string{}
	if err := Object(in, func(k, v []byte) bool {
		keys = append(keys, string(k))
		vals[string(k)] = string(v)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b", "c", "g", "h", "i"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	if vals["c"] != `{"d":[1,{"e":"]"}],"f":null}` || vals["b"] != `"x\"y}"` || vals["h"] != "-2.5e3" || vals["g"] != "[ ]" {
		t.Fatalf("values %q", vals)
	}
	var elems []string
	if err := Array([]byte(`[1, "two", {"three":3}, [4]]`), func(e []byte) bool {
		elems = append(elems, string(e))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"1", `"two"`, `{"three":3}`, "[4]"}; !reflect.DeepEqual(elems, want) {
		t.Fatalf("elements %v", elems)
	}
	s, err := String([]byte(`"tab\tquote\" é"`))
	if err != nil || string(s) != "tab\tquote\" é" {
		t.Fatalf("String = %q, %v", s, err)
	}
	if n, err := Uint([]byte(`"18446744073709551615"`)); err != nil || n != 1<<64-1 {
		t.Fatalf("Uint = %d, %v", n, err)
	}
	if n, err := Int([]byte(`-42`)); err != nil || n != -42 {
		t.Fatalf("Int = %d, %v", n, err)
	}
}

func TestMalformed(t *testing.T) {
	for _, in := range []string{``, `[]`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":"x}`, `{"a":[1,2}`, `{"a":1 "b":2}`} {
		if err := Object([]byte(in), func(k, v []byte) bool { return true }); err == nil {
			t.Errorf("Object(%q) accepted it", in)
		}
	}
}

// FuzzObject checks that the walker never panics and walks every valid
// object encoding/json accepts.
func FuzzObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":{"b":[1,"]"]},"c":"\\\""}`, `{"event":{"room":"r","seq":"1"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		err := Object(b, func(k, v []byte) bool {
			n++
			return true
		})
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) == nil && m != nil {
			if err != nil || n < len(m) {
				t.Fatalf("valid object %q: walked %d keys of %d, err %v", b, n, len(m), err)
			}
		}
	})
}

// field returns the raw value of key in object b.
func field(b []byte, key string) []byte {
	var out []byte
	Object(b, func(k, v []byte) bool {
		if string(k) == key {
			out = v
			return false
		}
		return true
	})
	return out
}

// BenchmarkPush walks a Centrifugo push the way the load tool does: four
// nested objects down to a 65-byte text.
func BenchmarkPush(b *testing.B) {
	line := []byte(`{"push":{"channel":"room:f-abc-0","pub":{"data":{"text":"plt 12345 987654321 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},"offset":12345}}}`)
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		text, err := String(field(field(field(field(line, "push"), "pub"), "data"), "text"))
		if err != nil || len(text) != 65 {
			b.Fatalf("text %q, %v", text, err)
		}
	}
}
