//go:build !linux

package ring

import "errors"

var errNoEventfd = errors.New("ring: eventfds need Linux")

func kickEventfd(int) {}

func sleepEventfd(int) error { return errNoEventfd }
