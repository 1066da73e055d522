package api

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"unicode"
)

// MinKeyLength is the shortest API key accepted: a key is a password that
// never meets a human, so it is long and random (e.g. `openssl rand -hex
// 32`).
const MinKeyLength = 32

// Keys are the API keys that may call the server API, each with a name
// that stands for it in logs and metrics (the key itself never appears).
// They are kept as SHA-256 digests and compared in constant time, all of
// them on every call, so neither a key's bytes nor which key matched leaks
// through timing. Reload swaps them atomically (SIGHUP).
type Keys struct {
	file string
	flag string
	set  atomic.Pointer[[]namedKey]
}

type namedKey struct {
	name   string
	digest [sha256.Size]byte
}

// LoadKeys reads the keys of file (when not empty) and adds flagKey (when
// not empty, named "flag"). The file has one key per line, as "name key"
// or a key alone (named by its line: "line 3"); blank lines and lines
// starting with # are skipped. It fails on a key shorter than
// MinKeyLength, a key given twice, or a file other users may read.
func LoadKeys(file, flagKey string) (*Keys, error) {
	k := &Keys{file: file, flag: flagKey}
	if err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Reload re-reads the key file; on an error the keys in use stay.
func (k *Keys) Reload() error {
	var set []namedKey
	seen := map[[sha256.Size]byte]string{}
	add := func(name, key string) error {
		if len(key) < MinKeyLength {
			return fmt.Errorf("API key %s is %d bytes; at least %d are needed (e.g. openssl rand -hex 32)", name, len(key), MinKeyLength)
		}
		d := sha256.Sum256([]byte(key))
		if other, dup := seen[d]; dup {
			return fmt.Errorf("API keys %s and %s are the same key", other, name)
		}
		seen[d] = name
		set = append(set, namedKey{name: name, digest: d})
		return nil
	}
	if k.file != "" {
		info, err := os.Stat(k.file)
		if err != nil {
			return fmt.Errorf("API key file: %w", err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			return fmt.Errorf("API key file %s may be read by other users (mode %v): chmod 600 it", k.file, info.Mode().Perm())
		}
		b, err := os.ReadFile(k.file)
		if err != nil {
			return fmt.Errorf("API key file: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for line := 1; sc.Scan(); line++ {
			text := strings.TrimSpace(sc.Text())
			if text == "" || strings.HasPrefix(text, "#") {
				continue
			}
			fields := strings.FieldsFunc(text, unicode.IsSpace)
			var name, key string
			switch len(fields) {
			case 1:
				name, key = fmt.Sprintf("line %d", line), fields[0]
			case 2:
				name, key = fields[0], fields[1]
			default:
				return fmt.Errorf("API key file %s, line %d: want \"name key\" or a key alone", k.file, line)
			}
			if err := add(fmt.Sprintf("%q (%s, line %d)", name, k.file, line), key); err != nil {
				return err
			}
			set[len(set)-1].name = name
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("API key file %s: %w", k.file, err)
		}
	}
	if k.flag != "" {
		if err := add("given by -api-key", k.flag); err != nil {
			return err
		}
		set[len(set)-1].name = "flag"
	}
	if len(set) == 0 {
		return errors.New("no API keys: give -api-keys FILE or -api-key KEY")
	}
	k.set.Store(&set)
	return nil
}

// Len is how many keys there are.
func (k *Keys) Len() int {
	if k == nil || k.set.Load() == nil {
		return 0
	}
	return len(*k.set.Load())
}

// Check reads an Authorization header ("Bearer <key>") and returns the
// name of the key it carries, or false.
func (k *Keys) Check(authorization string) (name string, ok bool) {
	if k == nil || k.set.Load() == nil {
		return "", false
	}
	scheme, key, found := strings.Cut(authorization, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return "", false
	}
	d := sha256.Sum256([]byte(key))
	set := *k.set.Load()
	match := -1
	for i, nk := range set { // every key, whichever matches
		if subtle.ConstantTimeCompare(d[:], nk.digest[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return "", false
	}
	return set[match].name, true
}
