package dmapool

import (
	"fmt"
	"log/slog"
	"math/bits"
)

// Limits and defaults.
const (
	// DefaultSlotSize is the minimum allocation unit when Config.SlotSize is 0.
	DefaultSlotSize = 2 << 10

	// MinSlotSize and MaxSlotSize bound Config.SlotSize.
	MinSlotSize = 64
	MaxSlotSize = 1 << 20

	// MaxRegionSize is the largest single region. New and Grow split a larger
	// size into several regions; one reservation never spans two regions, so
	// it is also the largest reservation.
	MaxRegionSize = 1 << 30

	// MaxRegions bounds the number of regions of one pool.
	MaxRegions = 1024

	// PoisonByte fills released memory when Config.Poison is set.
	PoisonByte = 0xDB
)

// HugePages selects the page size of the pool's regions.
type HugePages int

const (
	// HugeAuto (the zero value) uses hugetlb pages (MAP_HUGETLB / MFD_HUGETLB)
	// when the system has them reserved, else transparent huge pages via
	// madvise(MADV_HUGEPAGE) when THP is enabled for the kind of mapping,
	// else normal pages.
	HugeAuto HugePages = iota
	// HugeOn is HugeAuto without the last step: New fails with ErrHugePages
	// when neither hugetlb nor transparent huge pages are available.
	HugeOn
	// HugeOff uses normal pages.
	HugeOff
)

func (h HugePages) String() string {
	switch h {
	case HugeAuto:
		return "auto"
	case HugeOn:
		return "on"
	case HugeOff:
		return "off"
	}
	return fmt.Sprintf("HugePages(%d)", int(h))
}

// PinMode selects whether regions are locked in RAM with mlock(2).
type PinMode int

const (
	// PinPrefer (the zero value) locks when it can; when it cannot (the
	// usual 8 MiB RLIMIT_MEMLOCK of an unprivileged process is smaller
	// than most pools), the pool works unpinned, Pinned reports false and
	// one warning per pool goes to Config.Logger, saying how to raise the
	// limit or, with PinOff, not to try.
	PinPrefer PinMode = iota
	// PinRequire: New and Grow fail with ErrPin when a region cannot be
	// locked, naming RLIMIT_MEMLOCK and how to raise it.
	PinRequire
	// PinOff never locks.
	PinOff
)

func (m PinMode) String() string {
	switch m {
	case PinRequire:
		return "require"
	case PinPrefer:
		return "prefer"
	case PinOff:
		return "off"
	}
	return fmt.Sprintf("PinMode(%d)", int(m))
}

// PageKind reports the pages a region actually got.
type PageKind int

const (
	// PageNormal: the system's base page size.
	PageNormal PageKind = iota
	// PageTHP: normal pages advised MADV_HUGEPAGE (transparent huge pages).
	PageTHP
	// PageHugeTLB: pages from the hugetlb reserve.
	PageHugeTLB
)

func (k PageKind) String() string {
	switch k {
	case PageNormal:
		return "normal"
	case PageTHP:
		return "thp"
	case PageHugeTLB:
		return "hugetlb"
	}
	return fmt.Sprintf("PageKind(%d)", int(k))
}

// Config describes a pool. The zero value of every field but Size is a
// usable default.
type Config struct {
	// Size is the number of bytes of buffer memory New maps, rounded up to a
	// whole number of slots and pages, and of huge pages when the region
	// gets hugetlb pages or HugeOn is set. Required. Sizes above
	// MaxRegionSize become several regions.
	Size int

	// SlotSize is the minimum allocation unit, a power of two between
	// MinSlotSize and MaxSlotSize; 0 means DefaultSlotSize (2 KiB). Every
	// reservation is rounded up to whole slots.
	SlotSize int

	// HugePages selects the page size; the zero value is HugeAuto.
	HugePages HugePages

	// Pin selects mlock behaviour; the zero value is PinPrefer.
	Pin PinMode

	// Shared backs each region with a sealed memfd (it can be neither grown
	// nor shrunk), so that Regions can hand it to another process, which maps
	// it with MapShared.
	Shared bool

	// Poison fills released memory with PoisonByte, to make use after
	// release visible. It costs a memset per release.
	Poison bool

	// Name labels the memfds of a Shared pool (seen in /proc/PID/maps);
	// empty means "zcnet-dmapool".
	Name string

	// Logger receives the pool's warnings (today only "not pinned" under
	// PinPrefer); nil means slog.Default().
	Logger *slog.Logger
}

// normalize checks c and fills in defaults.
func (c Config) normalize() (Config, error) {
	if c.SlotSize == 0 {
		c.SlotSize = DefaultSlotSize
	}
	if c.SlotSize < MinSlotSize || c.SlotSize > MaxSlotSize || bits.OnesCount(uint(c.SlotSize)) != 1 {
		return c, fmt.Errorf("dmapool: SlotSize %d is not a power of two in [%d, %d]: %w",
			c.SlotSize, MinSlotSize, MaxSlotSize, ErrConfig)
	}
	if c.Size <= 0 {
		return c, fmt.Errorf("dmapool: Size %d must be positive: %w", c.Size, ErrConfig)
	}
	if c.HugePages < HugeAuto || c.HugePages > HugeOff {
		return c, fmt.Errorf("dmapool: unknown %v: %w", c.HugePages, ErrConfig)
	}
	if c.Pin < PinPrefer || c.Pin > PinOff {
		return c, fmt.Errorf("dmapool: unknown %v: %w", c.Pin, ErrConfig)
	}
	if c.Name == "" {
		c.Name = "zcnet-dmapool"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
