package dmapool_test

import (
	"fmt"

	"github.com/zcnet/zcnet/dmapool"
)

// A program's life with a pool: reserve, fill, hand part of the buffer on,
// release every part, close.
func Example() {
	pool, err := dmapool.New(dmapool.Config{Size: 1 << 20, Pin: dmapool.PinPrefer, HugePages: dmapool.HugeOff})
	if err != nil {
		fmt.Println(err)
		return
	}
	buf, err := pool.Reserve(1500) // one 2 KiB slot
	if err != nil {
		fmt.Println(err)
		return
	}
	n := copy(buf.Bytes(), "hello, world")
	msg, rest, _ := buf.Split(n) // buf is consumed; two parts, released one by one
	fmt.Println(string(msg.Bytes()), rest.Len())

	_ = rest.Release()
	fmt.Println("in use:", pool.Stats().SlotsInUse)
	_ = msg.Release() // the last part returns the slot
	fmt.Println("in use:", pool.Stats().SlotsInUse)
	fmt.Println("again:", msg.Release() != nil)
	fmt.Println(pool.Close())
	// Output:
	// hello, world 1488
	// in use: 1
	// in use: 0
	// again: true
	// <nil>
}

// The peer side of a shared pool: the owner sends RegionInfo.FD and Size
// (over a Unix socket, SCM_RIGHTS) and a frame's offset from Locate; the
// peer maps the region and reads or writes the frame in place.
func ExampleMapShared() {
	pool, err := dmapool.New(dmapool.Config{Size: 256 << 10, Shared: true, Pin: dmapool.PinPrefer, HugePages: dmapool.HugeOff})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	frame, _ := pool.Reserve(64)
	copy(frame.Bytes(), "from the owner")
	region, off, _ := pool.Locate(frame)
	info := pool.Regions()[region]

	peer, err := dmapool.MapShared(info.FD, info.Size) // in the peer process
	if err != nil {
		fmt.Println(err)
		return
	}
	view, _ := peer.Slice(off, 14)
	fmt.Println(string(view))
	copy(view, "from the peer!")
	fmt.Println(string(frame.Bytes()[:14]))
	_ = peer.Close()
	_ = frame.Release()
	// Output:
	// from the owner
	// from the peer!
}
