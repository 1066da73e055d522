package client

import "syscall"

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT (since 4.2).
const ipBindAddressNoPort = 24

// bindAddressNoPort lets a socket bound to a local address (Options.LocalAddr)
// take its port at connect time, where the kernel picks one free for that
// destination, instead of at bind time, where it must find one free for
// every destination: past some 15,000 connections from one address, bind's
// search took most of a load process's CPU (and each address would hold
// one connection per port whatever the destinations).
//
// Best effort: a kernel without it binds as before.
func bindAddressNoPort(_, _ string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
}
