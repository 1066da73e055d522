//go:build !linux

package client

import "syscall"

// bindAddressNoPort is Linux's (bind_linux.go); elsewhere the port is
// taken at bind time.
func bindAddressNoPort(_, _ string, _ syscall.RawConn) error { return nil }
