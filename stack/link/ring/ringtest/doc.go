// Package ringtest attacks the stack side of a ring link for tests: it
// writes every kind of malformed ring entry (ring.Fault) through a
// ring.Peer, as a misbehaving process would, and waits until the stack
// side has counted each. It owns no link and no stack; the tests bring
// both (see integration/reliability_ring_test.go).
package ringtest
