//go:build faults

// This file exists only in binaries built with `go build -tags faults`
// (staging, chaos drills). A production build has no -faults flag at all, so
// fault injection cannot be switched on by accident.
package main

import (
	"flag"

	"github.com/parleychat/parley/supervision"
)

func init() {
	extraFlags = append(extraFlags, func(fs *flag.FlagSet, o *options) func() error {
		spec := fs.String("faults", "", `inject faults (staging only): e.g. "kinds=session,room;share=0.001;delay=2ms"; keys kinds, marker, share, every, delay`)
		return func() error {
			if *spec == "" {
				return nil
			}
			f, err := supervision.ParseFaults(*spec)
			if err != nil {
				return err
			}
			o.server.Faults = f
			o.faultsWarning = "FAULT INJECTION IS ON: " + *spec
			return nil
		}
	})
}
