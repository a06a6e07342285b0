//go:build !linux

// Command flood needs Linux (network namespaces, TAP devices, hping3).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "flood: Linux only")
	os.Exit(3)
}
