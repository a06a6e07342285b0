//go:build !linux

package dmapool

import "fmt"

// mapping is one region's memory; on this platform there is none.
type mapping struct {
	mem    []byte
	fd     int
	pages  PageKind
	pinned bool
	pinErr error
}

func mapRegion(size int, c *Config) (*mapping, error) {
	return nil, fmt.Errorf("dmapool: map %d bytes: %w", size, ErrUnsupported)
}

func (m *mapping) unmap() {}

func (m *mapping) addr() uintptr { return 0 }

func poison(b []byte) {
	for i := range b {
		b[i] = PoisonByte
	}
}

// Mapping is a peer's view of a Shared region; unsupported here.
type Mapping struct{ mem []byte }

// MapShared is unsupported on this platform.
func MapShared(fd int, size int) (*Mapping, error) {
	return nil, fmt.Errorf("dmapool: map shared region: %w", ErrUnsupported)
}

// Len is 0: there is no mapping on this platform.
func (m *Mapping) Len() int { return len(m.mem) }

// Slice is unsupported on this platform.
func (m *Mapping) Slice(off, n int) ([]byte, error) {
	return nil, fmt.Errorf("dmapool: mapping: %w", ErrUnsupported)
}

// Close is a no-op on this platform.
func (m *Mapping) Close() error { return nil }
