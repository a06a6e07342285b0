//go:build !linux

// The bench needs Linux: network namespaces, TAP devices, veth pairs and
// gVisor's fdbased link. Elsewhere it compiles and says so.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench: needs Linux (network namespaces, TAP devices, veth)")
	os.Exit(3)
}
