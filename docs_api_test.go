package main_test

import (
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	apiv1 "github.com/parleychat/parley/proto/api"
)

// TestAPIDocsCoverTheProto: docs/API.md names every method of the server
// API and of the hooks, and every field of their requests and answers (by
// its JSON name, as curl users write it), so the page cannot fall behind
// the proto unnoticed.
func TestAPIDocsCoverTheProto(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, f := range []protoreflect.FileDescriptor{apiv1.File_api_proto, apiv1.File_hooks_proto} {
		svcs := f.Services()
		for i := range svcs.Len() {
			methods := svcs.Get(i).Methods()
			for j := range methods.Len() {
				m := methods.Get(j)
				if !strings.Contains(doc, "`"+string(m.Name())+"`") && !strings.Contains(doc, "### "+string(m.Name())) {
					t.Errorf("docs/API.md does not describe %s", m.FullName())
				}
				for _, msg := range []protoreflect.MessageDescriptor{m.Input(), m.Output()} {
					fields := msg.Fields()
					for k := range fields.Len() {
						if name := fields.Get(k).JSONName(); !strings.Contains(doc, "`"+name+"`") {
							t.Errorf("docs/API.md does not name %s's field %s (`%s`)", msg.FullName(), fields.Get(k).Name(), name)
						}
					}
				}
			}
		}
	}
}
