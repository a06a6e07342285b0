package api

import (
	"os"
	"syscall"
)

// sockErr wraps an errno as the socket calls report it.
func sockErr(e syscall.Errno) error { return os.NewSyscallError("socket", e) }
