package hostile

import (
	"encoding/binary"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// Injector writes raw Ethernet frames out of one network device through an
// AF_PACKET socket (packet(7)). The kernel neither checks nor repairs what
// it sends: a TAP device hands each frame to the reader on its other side
// byte for byte. Its methods are safe for concurrent use.
type Injector struct {
	fd      int  // AF_PACKET, SOCK_RAW, protocol 0 (sends only)
	ifindex int  // the device frames leave through
	vnet    bool // each write starts with a struct virtio_net_hdr
}

// NewInjector opens an injector on the device named ifname in the calling
// thread's network namespace (call it on a thread switched into the
// device's namespace; the socket works from any thread afterwards). With
// vnet, every frame is sent with a virtio-net header of the caller's
// choosing (SendVnet), as a virtual machine's NIC would, and the kernel
// validates that header the way it does a guest's (PACKET_VNET_HDR).
//
// Protocol 0 means the socket receives nothing, so it never queues the
// device's traffic.
func NewInjector(ifname string, vnet bool) (*Injector, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("hostile: injector on %q: %w", ifname, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("hostile: AF_PACKET socket (needs CAP_NET_RAW): %w", err)
	}
	if vnet {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("hostile: PACKET_VNET_HDR: %w", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifc.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("hostile: bind to %s: %w", ifname, err)
	}
	return &Injector{fd: fd, ifindex: ifc.Index, vnet: vnet}, nil
}

// Send writes each frame (an Ethernet frame, header included) out of the
// device; it returns the number sent and the first error. An injector
// opened with vnet sends each frame with a zero virtio-net header.
func (in *Injector) Send(frames ...[]byte) (int, error) {
	for i, f := range frames {
		if err := in.write(VnetHdr{}, f); err != nil {
			return i, err
		}
	}
	return len(frames), nil
}

// VnetHdr is the legacy struct virtio_net_hdr that PACKET_VNET_HDR
// prepends to each frame (include/uapi/linux/virtio_net.h), in host byte
// order, which is little-endian on every machine we run on.
type VnetHdr struct {
	Flags      uint8 // VIRTIO_NET_HDR_F_NEEDS_CSUM = 1, _DATA_VALID = 2
	GSOType    uint8 // VIRTIO_NET_HDR_GSO_NONE = 0, _TCPV4 = 1, _UDP = 3, _TCPV6 = 4
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
}

// vnetHdrLen is sizeof(struct virtio_net_hdr).
const vnetHdrLen = 10

// SendVnet writes one frame with the virtio-net header h. The kernel may
// refuse a header it finds inconsistent (EINVAL): that refusal is the
// kernel's check, reported as the error.
func (in *Injector) SendVnet(h VnetHdr, frame []byte) error {
	if !in.vnet {
		return fmt.Errorf("hostile: SendVnet on an injector opened without vnet: %w", unix.EINVAL)
	}
	return in.write(h, frame)
}

func (in *Injector) write(h VnetHdr, frame []byte) error {
	b := frame
	if in.vnet {
		b = make([]byte, vnetHdrLen+len(frame))
		b[0], b[1] = h.Flags, h.GSOType
		binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
		binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
		binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
		binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
		copy(b[vnetHdrLen:], frame)
	}
	n, err := unix.Write(in.fd, b)
	if err != nil {
		return fmt.Errorf("hostile: send %d-byte frame: %w", len(frame), err)
	}
	if n != len(b) {
		return fmt.Errorf("hostile: sent %d of %d bytes: %w", n, len(b), unix.EIO)
	}
	return nil
}

// Close closes the socket.
func (in *Injector) Close() error { return unix.Close(in.fd) }
