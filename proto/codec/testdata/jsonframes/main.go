// Command jsonframes prints, on two lines, what protojson and codec.JSON
// make of one envelope. TestJSONEncodeSameInEveryBuild runs it as several
// binaries that differ only in trailing bytes: protojson seeds its choice of
// whitespace with a hash of the running binary, so some of them space their
// output and some do not.
package main

import (
	"fmt"
	"os"

	"google.golang.org/protobuf/encoding/protojson"

	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

func main() {
	env := &parleypb.Envelope{Body: &parleypb.Envelope_Ack{Ack: &parleypb.Ack{RequestId: "2", Room: "general",
		Members: []*parleypb.Member{{Name: "bob", Devices: 1}, {Name: "alice", Devices: 1}}}}}
	raw, err := protojson.Marshal(env)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	enc, err := codec.JSON.Encode(env)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s\n%s\n", raw, enc)
}
