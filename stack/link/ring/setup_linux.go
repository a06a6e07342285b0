package ring

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Handshake over the unix socket (little-endian):
//
//  1. peer → stack: hello {magic u32, version u32}
//  2. stack → peer: reply {magic u32, version u32, status u32, slots u32,
//     frames u32, frameSize u32, mtu u32, features u32, regionSize u64,
//     base u64}, features a bit set (featureGSO; unknown bits ignored),
//     with 3 fds (SCM_RIGHTS) when status is 0: the pool region's memfd, the
//     stack side's eventfd (the peer kicks it), the peer's eventfd.
//     status 1: version mismatch; the stack closes the socket.
//  3. From then on the socket carries nothing; its closing tells either side
//     that the other is gone.
const (
	helloSize = 8
	replySize = 48
	statusOK  = 0
	statusBad = 1

	featureGSO = 1 << 0 // frames carry TCP segments up to gsoMaxSize (Config.GSO)
)

// rawFD returns f's descriptor without switching it to blocking mode (as
// f.Fd would); valid while f is open.
func rawFD(f *os.File) int {
	fd := -1
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(p uintptr) { fd = int(p) })
	}
	return fd
}

type reply struct {
	status, slots, frames, frameSize, mtu, features uint32
	regionSize, base                                uint64
}

func encodeReply(r reply) []byte {
	b := make([]byte, replySize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], magic)
	le.PutUint32(b[4:], Version)
	le.PutUint32(b[8:], r.status)
	le.PutUint32(b[12:], r.slots)
	le.PutUint32(b[16:], r.frames)
	le.PutUint32(b[20:], r.frameSize)
	le.PutUint32(b[24:], r.mtu)
	le.PutUint32(b[28:], r.features)
	le.PutUint64(b[32:], r.regionSize)
	le.PutUint64(b[40:], r.base)
	return b
}

// readHello reads the peer's hello and reports whether its version matches.
func readHello(c *net.UnixConn) (uint32, error) {
	b := make([]byte, helloSize)
	if _, err := io.ReadFull(c, b); err != nil {
		return 0, fmt.Errorf("%w: reading hello: %v", ErrHandshake, err)
	}
	if binary.LittleEndian.Uint32(b) != magic {
		return 0, fmt.Errorf("%w: bad magic %#x", ErrHandshake, binary.LittleEndian.Uint32(b))
	}
	return binary.LittleEndian.Uint32(b[4:]), nil
}

func sendHello(c *net.UnixConn, version uint32) error {
	b := make([]byte, helloSize)
	binary.LittleEndian.PutUint32(b, magic)
	binary.LittleEndian.PutUint32(b[4:], version)
	_, err := c.Write(b)
	return err
}

func sendReply(c *net.UnixConn, r reply, fds ...int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err := c.WriteMsgUnix(encodeReply(r), oob, nil)
	return err
}

// readReply reads the stack side's reply and its fds, as Files the caller
// owns (the eventfds stay blocking, see eventfd_linux.go).
func readReply(c *net.UnixConn) (reply, []*os.File, error) {
	b := make([]byte, replySize)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, _, _, err := c.ReadMsgUnix(b, oob)
	if err != nil {
		return reply{}, nil, fmt.Errorf("%w: reading reply: %v", ErrHandshake, err)
	}
	var files []*os.File
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err == nil {
			for _, m := range msgs {
				fds, err := unix.ParseUnixRights(&m)
				if err != nil {
					continue
				}
				for _, fd := range fds {
					files = append(files, os.NewFile(uintptr(fd), "zcnet-ring-fd"))
				}
			}
		}
	}
	le := binary.LittleEndian
	if n != replySize || le.Uint32(b) != magic {
		closeFiles(files)
		return reply{}, nil, fmt.Errorf("%w: short or foreign reply", ErrHandshake)
	}
	r := reply{status: le.Uint32(b[8:]), slots: le.Uint32(b[12:]), frames: le.Uint32(b[16:]),
		frameSize: le.Uint32(b[20:]), mtu: le.Uint32(b[24:]), features: le.Uint32(b[28:]), regionSize: le.Uint64(b[32:]), base: le.Uint64(b[40:])}
	if v := le.Uint32(b[4:]); v != Version || r.status != statusOK {
		closeFiles(files)
		return reply{}, nil, fmt.Errorf("%w: stack side speaks version %d, we speak %d", ErrMismatch, v, Version)
	}
	if len(files) != 3 {
		closeFiles(files)
		return reply{}, nil, fmt.Errorf("%w: got %d fds, want 3", ErrHandshake, len(files))
	}
	return r, files, nil
}
