package dmapool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// This file holds every system call the package makes: mmap, madvise,
// mlock, memfd_create and the rlimit and /proc look-ups that explain a
// failed mlock. Address arithmetic lives in mmap_unsafe.go.

const defaultHugePageSize = 2 << 20

// mapping is one region's memory.
type mapping struct {
	vm     vmRange
	mem    []byte   // vm.bytes(); what buffers are carved from
	fd     int      // sealed memfd of a shared region; -1 otherwise
	pages  PageKind // what the region got
	pinned bool     // mlock succeeded
	pinErr error    // why it is not pinned, under PinPrefer
}

// mapRegion maps size bytes (already a multiple of the slot and page size)
// as c asks: 1. hugetlb pages if allowed and reserved; 2. otherwise normal
// pages, advised MADV_HUGEPAGE when transparent huge pages are enabled for
// this kind of mapping; 3. MADV_DONTFORK; 4. mlock per c.Pin; 5. populate
// every page (mlock already has, when it succeeded).
func mapRegion(size int, c *Config) (*mapping, error) {
	var (
		m      *mapping
		tlbErr error
	)
	if c.HugePages != HugeOff {
		m, tlbErr = mapHugeTLB(size, c)
	}
	if m == nil {
		if c.HugePages == HugeOn {
			size = roundUp(size, hugePageSize()) // else no huge page fits
		}
		// A region smaller than a huge page cannot use one.
		thp := c.HugePages != HugeOff && size >= hugePageSize() && thpEnabled(c.Shared)
		if c.HugePages == HugeOn && !thp {
			return nil, fmt.Errorf("dmapool: map %d bytes: hugetlb: %v; transparent huge pages disabled for %s memory (%s): %w",
				size, tlbErr, kindOf(c.Shared), thpSysfs(c.Shared), ErrHugePages)
		}
		var err error
		if m, err = mapNormal(size, c, thp); err != nil {
			return nil, err
		}
	}
	// Belt and braces for cgo code that calls fork(2) without exec: the
	// child must not get a copy-on-write view of memory a peer writes into.
	_ = unix.Madvise(m.mem, unix.MADV_DONTFORK)

	if c.Pin != PinOff {
		if err := unix.Mlock(m.mem); err != nil {
			pe := pinError(len(m.mem), err, c.Pin)
			if c.Pin == PinRequire {
				m.unmap()
				return nil, pe
			}
			m.pinErr = pe
		} else {
			m.pinned = true
		}
	}
	if !m.pinned && m.pages != PageHugeTLB {
		populate(m.mem)
	}
	return m, nil
}

func kindOf(shared bool) string {
	if shared {
		return "shared (shmem)"
	}
	return "anonymous"
}

// mapHugeTLB maps size rounded up to the huge page size from the hugetlb
// reserve, populated. It fails at once (ENOMEM) when too few pages are
// reserved, which is the common case.
func mapHugeTLB(size int, c *Config) (*mapping, error) {
	hp := hugePageSize()
	size = roundUp(size, hp)
	if c.Shared {
		fd, err := newMemfd(c.Name, size, unix.MFD_HUGETLB)
		if err != nil {
			return nil, err
		}
		vm, err := mmapAnywhere(uintptr(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE, fd)
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("mmap MAP_SHARED of hugetlb memfd: %w", err)
		}
		return &mapping{vm: vm, mem: vm.bytes(), fd: fd, pages: PageHugeTLB}, nil
	}
	vm, err := mmapAnywhere(uintptr(size), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_HUGETLB|unix.MAP_POPULATE, -1)
	if err != nil {
		return nil, fmt.Errorf("mmap MAP_HUGETLB: %w", err)
	}
	return &mapping{vm: vm, mem: vm.bytes(), fd: -1, pages: PageHugeTLB}, nil
}

// mapNormal maps size bytes of normal pages; with thp it aligns the mapping
// to the huge page size and advises MADV_HUGEPAGE.
func mapNormal(size int, c *Config, thp bool) (*mapping, error) {
	align := uintptr(os.Getpagesize())
	if thp {
		align = uintptr(hugePageSize())
	}
	vm, err := reserveAligned(uintptr(size), align)
	if err != nil {
		return nil, fmt.Errorf("dmapool: reserve %d bytes of address space: %w", size, err)
	}
	fd := -1
	if c.Shared {
		if fd, err = newMemfd(c.Name, size, 0); err != nil {
			_ = vm.unmap()
			return nil, fmt.Errorf("dmapool: %w", err)
		}
		err = vm.mapFixed(unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED, fd)
	} else {
		err = vm.mapFixed(unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, -1)
	}
	m := &mapping{vm: vm, fd: fd, pages: PageNormal}
	if err != nil {
		m.unmap()
		return nil, fmt.Errorf("dmapool: mmap %d bytes: %w", size, err)
	}
	m.mem = vm.bytes()
	if thp {
		if err := unix.Madvise(m.mem, unix.MADV_HUGEPAGE); err == nil {
			m.pages = PageTHP
		} else if c.HugePages == HugeOn {
			m.unmap()
			return nil, fmt.Errorf("dmapool: madvise(MADV_HUGEPAGE): %v: %w", err, ErrHugePages)
		}
	}
	return m, nil
}

// newMemfd creates a memfd of size bytes and seals its size, so that a peer
// that receives it cannot shrink it under us (which would turn our accesses
// into SIGBUS) nor grow it.
func newMemfd(name string, size int, flags int) (int, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|flags)
	if err != nil {
		return -1, fmt.Errorf("memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("ftruncate memfd to %d: %w", size, err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("seal memfd: %w", err)
	}
	return fd, nil
}

// populate faults in every page now rather than on first use, so that the
// first packet does not pay for page faults.
func populate(b []byte) {
	if err := unix.Madvise(b, unix.MADV_POPULATE_WRITE); err == nil {
		return
	}
	// Kernels before 5.14: touch one byte per page.
	step := os.Getpagesize()
	for i := 0; i < len(b); i += step {
		b[i] = 0
	}
}

// poison fills b with PoisonByte.
func poison(b []byte) {
	for i := range b {
		b[i] = PoisonByte
	}
}

// addr is the address of the region's first byte (RegionInfo.Addr).
func (m *mapping) addr() uintptr { return m.vm.addr() }

func (m *mapping) unmap() {
	if m.vm.p != nil {
		_ = m.vm.unmap() // munlocks too
		m.vm = vmRange{}
		m.mem = nil
	}
	if m.fd >= 0 {
		_ = unix.Close(m.fd)
		m.fd = -1
	}
}

// hugePageSize is the default hugetlb page size from /proc/meminfo.
func hugePageSize() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return defaultHugePageSize
	}
	if kb, ok := procField(b, "Hugepagesize:"); ok && kb > 0 {
		return int(kb) << 10
	}
	return defaultHugePageSize
}

// thpSysfs names the sysfs file that enables THP for a kind of mapping.
func thpSysfs(shared bool) string {
	if shared {
		return "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
	}
	return "/sys/kernel/mm/transparent_hugepage/enabled"
}

// thpEnabled reports whether madvise(MADV_HUGEPAGE) can give this kind of
// mapping transparent huge pages: the selected ([bracketed]) mode in sysfs.
func thpEnabled(shared bool) bool {
	b, err := os.ReadFile(thpSysfs(shared))
	if err != nil {
		return false
	}
	s := string(b)
	i, j := strings.IndexByte(s, '['), strings.IndexByte(s, ']')
	if i < 0 || j < i {
		return false
	}
	switch s[i+1 : j] {
	case "always", "madvise", "advise", "within_size", "force":
		return true
	}
	return false
}

// procField parses "Name:   123 kB" lines of /proc files.
func procField(b []byte, name string) (int64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		f := strings.Fields(line[len(name):])
		if len(f) == 0 {
			return 0, false
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		return v, err == nil
	}
	return 0, false
}

// pinError explains a failed mlock of n bytes under mode: the limit in
// force, what the process has locked already, how to raise the limit, and
// the other modes that would not fail (PinRequire) or not try (PinPrefer).
func pinError(n int, err error, mode PinMode) error {
	var rl unix.Rlimit
	limit := "unknown"
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl) == nil {
		limit = fmt.Sprintf("%s (hard limit %s)", fmtLimit(rl.Cur), fmtLimit(rl.Max))
	}
	locked := "an unknown amount"
	if b, rerr := os.ReadFile("/proc/self/status"); rerr == nil {
		if kb, ok := procField(b, "VmLck:"); ok {
			locked = fmt.Sprintf("%d bytes", kb<<10)
		}
	}
	hint := "raise RLIMIT_MEMLOCK (ulimit -l in the shell that starts the program, LimitMEMLOCK= in a systemd unit, " +
		"a memlock line in /etc/security/limits.conf, --ulimit memlock= for a container) or grant CAP_IPC_LOCK; "
	if mode == PinRequire {
		hint += "or set Config.Pin to PinPrefer (the default: go on unpinned) or PinOff (do not pin)"
	} else {
		hint += "or set Config.Pin to PinOff to run unpinned without trying (and without this warning)"
	}
	if errors.Is(err, unix.EAGAIN) {
		hint = "the kernel could not lock some pages (EAGAIN); free memory or " + hint
	}
	return fmt.Errorf("dmapool: mlock of %d bytes failed (%v): RLIMIT_MEMLOCK is %s, this process already has %s locked; %s: %w",
		n, err, limit, locked, hint, ErrPin)
}

func fmtLimit(v uint64) string {
	if v == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return fmt.Sprintf("%d bytes", v)
}

// Mapping is a peer process's view of one region of a Shared pool: the fd
// from RegionInfo.FD (passed over a Unix socket), mapped read-write and
// shared, so that frames written through it are visible to the pool's
// owner and the other way round. Offsets are the region offsets that
// Pool.Locate reports.
type Mapping struct {
	mem []byte // nil after Close
}

// MapShared maps the first size bytes of fd, a region's memfd, read-write
// and shared. It does not take ownership of fd: the caller may close it at
// once; the mapping stays valid until Close.
func MapShared(fd int, size int) (*Mapping, error) {
	if size <= 0 {
		return nil, fmt.Errorf("dmapool: map shared region of %d bytes: %w", size, ErrSize)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("dmapool: map shared region: fstat fd %d: %w", fd, err)
	}
	if int64(size) > st.Size {
		return nil, fmt.Errorf("dmapool: map shared region: %d bytes asked, fd %d has %d: %w", size, fd, st.Size, ErrSize)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("dmapool: map shared region: mmap fd %d: %w", fd, err)
	}
	return &Mapping{mem: mem}, nil
}

// Len is the mapped size, 0 after Close.
func (m *Mapping) Len() int { return len(m.mem) }

// Slice returns the n bytes at region offset off. The slice is valid until
// Close; what it means (whose frame it is, who may write it) is the
// business of the protocol that passed the offset.
func (m *Mapping) Slice(off, n int) ([]byte, error) {
	if m.mem == nil {
		return nil, fmt.Errorf("dmapool: mapping: %w", ErrClosed)
	}
	if off < 0 || n < 0 || off > len(m.mem) || n > len(m.mem)-off {
		return nil, fmt.Errorf("dmapool: mapping: %d bytes at %d outside %d: %w", n, off, len(m.mem), ErrSize)
	}
	return m.mem[off : off+n : off+n], nil
}

// Close unmaps the region. No slice from Slice may be used afterwards.
// Closing twice returns nil.
func (m *Mapping) Close() error {
	if m.mem == nil {
		return nil
	}
	err := unix.Munmap(m.mem)
	m.mem = nil
	if err != nil {
		return fmt.Errorf("dmapool: unmap shared region: %w", err)
	}
	return nil
}
