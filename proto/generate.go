// Package parleypb is Parley's wire protocol: the Envelope that clients and
// the server exchange, its messages, error codes and close codes. It
// imports nothing of Parley's and nothing of the actor runtime, so a client
// (package client, the TypeScript SDK) needs only protobuf. Its codecs (the
// frames of each subprotocol) are in proto/codec.
//
// parley.pb.go is generated from parley.proto and committed. Regenerate it with
// `go generate ./proto` using Debian's protobuf-compiler 3.21.12 (protoc) and
// the protoc-gen-go that go.mod pins as a tool (google.golang.org/protobuf
// v1.36.12); test.sh fails when the committed file is stale.
package parleypb

//go:generate sh -c "protoc -I . --plugin=protoc-gen-go=\"$(go tool -n protoc-gen-go)\" --go_out=. --go_opt=paths=source_relative parley.proto"
