//go:build !linux

package dmapool

func runHelper() bool { return false }
