package main

import "syscall"

// childProcAttr makes a child the kernel kills (SIGKILL) when this
// process's thread that started it exits, as it does when the process dies.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
