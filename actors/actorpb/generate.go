// Package actorpb holds the messages Parley's actors send each other
// (sessions, rooms, presence, bots, the cluster's relays): protobuf, so that
// a room can live on another node, and carrying actor PIDs, so that they
// stay out of the wire protocol (package parleypb), which clients use
// without the actor runtime.
//
// parley_actors.pb.go is generated from parley_actors.proto and committed.
// Regenerate it with `go generate ./actors/actorpb` (Debian's
// protobuf-compiler 3.21.12 and the protoc-gen-go that go.mod pins as a
// tool); test.sh fails when the committed file is stale.
package actorpb

//go:generate sh -c "protoc -I . -I ../../proto -I \"$(go list -m -f '{{.Dir}}' github.com/asynkron/protoactor-go)/actor\" --plugin=protoc-gen-go=\"$(go tool -n protoc-gen-go)\" --go_out=. --go_opt=paths=source_relative parley_actors.proto"
