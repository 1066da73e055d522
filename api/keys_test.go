package api

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeKeys(t *testing.T, mode os.FileMode, text string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(f, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	return f
}

const (
	keyA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	keyB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	keyC = "cccccccccccccccccccccccccccccccccccc"
)

func TestKeys(t *testing.T) {
	f := writeKeys(t, 0o600, "# the application\nbackend "+keyA+"\n\n  "+keyB+"  \n")
	k, err := LoadKeys(f, keyC)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		header, name string
		ok           bool
	}{
		{"Bearer " + keyA, "backend", true},
		{"bearer " + keyB, "line 4", true},
		{"Bearer " + keyC, "flag", true},
		{"Bearer " + keyA[1:], "", false},
		{"Bearer " + keyA + "x", "", false},
		{"Basic " + keyA, "", false},
		{keyA, "", false},
		{"Bearer ", "", false},
		{"", "", false},
	} {
		if name, ok := k.Check(c.header); name != c.name || ok != c.ok {
			t.Errorf("Check(%q) = %q, %v; want %q, %v", c.header, name, ok, c.name, c.ok)
		}
	}
	if k.Len() != 3 {
		t.Fatalf("Len %d, want 3", k.Len())
	}

	// A rotation: the file now holds C only; A stops working at once.
	if err := os.WriteFile(f, []byte("rotated "+keyB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := k.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := k.Check("Bearer " + keyA); ok {
		t.Fatal("a key removed from the file still works after Reload")
	}
	if name, ok := k.Check("Bearer " + keyB); !ok || name != "rotated" {
		t.Fatalf("the rotated key: %q %v", name, ok)
	}
	// A broken file keeps the keys in use.
	if err := os.WriteFile(f, []byte("short key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := k.Reload(); err == nil {
		t.Fatal("a short key was accepted")
	}
	if _, ok := k.Check("Bearer " + keyB); !ok {
		t.Fatal("a failed Reload dropped the keys in use")
	}
	var none *Keys
	if _, ok := none.Check("Bearer " + keyA); ok || none.Len() != 0 {
		t.Fatal("no keys let a call in")
	}
}

func TestLoadKeysRefuses(t *testing.T) {
	for _, c := range []struct {
		name, file string
		mode       os.FileMode
		flag, want string
	}{
		{"a short key", "k short\n", 0o600, "", "at least 32"},
		{"a short flag key", "", 0, "short", "at least 32"},
		{"the same key twice", "a " + keyA + "\nb " + keyA + "\n", 0o600, "", "same key"},
		{"three fields", "a b " + keyA + "\n", 0o600, "", "line 1"},
		{"a file others read", "a " + keyA + "\n", 0o644, "", "chmod 600"},
		{"nothing", "# no keys\n", 0o600, "", "no API keys"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := ""
			if c.file != "" {
				f = writeKeys(t, c.mode, c.file)
			}
			_, err := LoadKeys(f, c.flag)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("LoadKeys: %v, want an error saying %q", err, c.want)
			}
			if strings.Contains(err.Error(), keyA) {
				t.Fatalf("the error shows the key: %v", err)
			}
		})
	}
}
