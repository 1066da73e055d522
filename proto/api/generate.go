// Package apiv1 is Parley's server API (api.proto): the messages, and in
// apiv1connect the Connect handler and client, generated and committed.
// Regenerate with `go generate ./proto/api` (Debian's protobuf-compiler
// 3.21.12, and protoc-gen-go and protoc-gen-connect-go as go.mod pins them
// as tools); test.sh fails when the committed files are stale.
package apiv1

//go:generate sh -c "protoc -I . -I .. --plugin=protoc-gen-go=\"$(go tool -n protoc-gen-go)\" --plugin=protoc-gen-connect-go=\"$(go tool -n protoc-gen-connect-go)\" --go_out=. --go_opt=paths=source_relative --connect-go_out=. --connect-go_opt=paths=source_relative api.proto hooks.proto"
