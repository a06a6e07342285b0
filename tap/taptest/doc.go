// Package taptest provides stand-ins for TAP devices, so that links can be
// tested without privileges: a socket pair that carries one frame per read
// and write, as a TAP queue does, and a Peer that plays the kernel's side of
// one end. It owns no links; tap.OpenFD takes one end of the pair.
package taptest

import "errors"

// ErrTimeout is returned by Peer.Read when no frame arrived in time.
var ErrTimeout = errors.New("taptest: timed out waiting for a frame")
