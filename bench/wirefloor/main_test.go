package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSmallRun builds the tool and runs one short, small step, so that it
// does not rot: the client must read every delivery (the tool fails
// otherwise) and the table must have its row.
func TestSmallRun(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "wirefloor")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-conns", "200", "-rates", "500,1000", "-duration", "300ms").CombinedOutput()
	if err != nil {
		t.Fatalf("wirefloor: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 4 { // banner, header, one row per rate
		t.Fatalf("want a banner, a header and 2 rows, got:\n%s", out)
	}
	for i, rate := range []string{"500", "1000"} {
		if f := strings.Fields(lines[2+i]); len(f) != 7 || f[0] != rate {
			t.Errorf("row %d = %q, want 7 columns starting with %s", i, lines[2+i], rate)
		}
	}
	if _, err := exec.Command(bin, "-rates", "fast").CombinedOutput(); err == nil {
		t.Error("-rates fast was accepted")
	}
}
