//go:build !linux

package main

import "syscall"

// childProcAttr: no parent-death signal off Linux; the demo's child still
// stops when the ring's socket closes.
func childProcAttr() *syscall.SysProcAttr { return nil }
