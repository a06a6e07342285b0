//go:build linux

package xdp

import "golang.org/x/sys/unix"

func txDesc(addr uint64, size int) unix.XDPDesc { return unix.XDPDesc{Addr: addr, Len: uint32(size)} }
