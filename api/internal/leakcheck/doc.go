// Package leakcheck runs package api's sockets with gVisor's reference
// leak checking on (every packet, buffer chunk and view registers itself
// while alive), in a test binary of its own because the checking must be
// switched on before the first such object exists. It has no code; its
// tests prove that receiving and closing give every reference back.
package leakcheck
