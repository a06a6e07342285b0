//go:build !linux

package tap

// TAP devices with the virtio-net header are a Linux interface; elsewhere
// Open and OpenFD fail with ErrUnsupported, and the package still builds.

type device struct {
	fds  []int
	info Info
}

func checkPlatform() error { return ErrUnsupported }

func openDevice(r resolved) (device, error) { return device{}, ErrUnsupported }
