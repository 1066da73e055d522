package supervision

import (
	"testing"
	"time"
)

func TestParseFaults(t *testing.T) {
	t.Parallel()
	f, err := ParseFaults("kinds=session,room; share=0.25;every=7;delay=3ms;marker=💥")
	if err != nil {
		t.Fatal(err)
	}
	if !f.Enabled("session") || !f.Enabled("room") || f.Enabled("presence") || f.Share != 0.25 || f.Every != 7 || f.Delay != 3*time.Millisecond || f.Marker != "💥" {
		t.Fatalf("parsed %+v", f)
	}
	for _, bad := range []string{"", "share=0.1", "kinds=bots", "kinds=room;share=2", "kinds=room;every=x", "kinds=room;nope=1", "kinds=room;delay"} {
		if _, err := ParseFaults(bad); err == nil {
			t.Errorf("ParseFaults(%q) accepted", bad)
		}
	}
	var none *Faults
	if none.Enabled("session") || none.Middleware("session") != nil {
		t.Fatal("a nil *Faults must inject nothing")
	}
}
