// Package parleypb holds Parley's protobuf messages: the Envelope that clients
// exchange with the server and the messages that actors send each other.
//
// parley.pb.go is generated from parley.proto and committed. Regenerate it with
// `go generate ./proto` using Debian's protobuf-compiler 3.21.12 (protoc) and
// the protoc-gen-go that go.mod pins as a tool (google.golang.org/protobuf
// v1.36.12); .ci/run fails when the committed file is stale.
package parleypb

//go:generate sh -c "protoc -I . -I \"$(go list -m -f '{{.Dir}}' github.com/asynkron/protoactor-go)/actor\" --plugin=protoc-gen-go=\"$(go tool -n protoc-gen-go)\" --go_out=. --go_opt=paths=source_relative parley.proto"
