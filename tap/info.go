package tap

import (
	"fmt"
	"strings"
)

// Info says how a link attached to its device: what Open chose where the
// Config left it open (Queues 0), and why.
type Info struct {
	// Name is the device's name.
	Name string
	// Queues is the number of queues (descriptors) the link serves.
	Queues int
	// MultiQueue reports an attach with IFF_MULTI_QUEUE: the device was
	// made multi-queue (by Open, for several queues, or with `ip tuntap
	// add … multi_queue`), which then holds even for one queue.
	MultiQueue bool
	// Created reports that Open made the device (no interface had the
	// name): it disappears when the link closes. False for a device that
	// existed (a persistent one from `ip tuntap add`) and for OpenFD.
	Created bool
	// Offloads are the offloads TUNSETOFFLOAD accepted.
	Offloads Offloads
	// TxQueueLen is the device's transmit queue length after Open (see
	// Config.TxQueueLen); 0 for OpenFD, which does not look.
	TxQueueLen int
	// Reason says why Queues and MultiQueue are what they are when the
	// device decided rather than Config ("the device was made without
	// multi_queue, which allows one queue"); empty otherwise.
	Reason string
	// RxBatch says how the queues' readers read: "readv" (one frame per
	// system call, the default), "io_uring (up to 64 reads per system
	// call)" (Config.IOURing), or "readv (io_uring unavailable: …)" when
	// Config.IOURing asked for it and the kernel refused.
	RxBatch string
}

// String describes the attach in one line, for logs: "zc0: 1 queue,
// existing device, single-queue (the device was made without multi_queue,
// which allows one queue)".
func (i Info) String() string {
	var b strings.Builder
	q := "queues"
	if i.Queues == 1 {
		q = "queue"
	}
	fmt.Fprintf(&b, "%s: %d %s", i.Name, i.Queues, q)
	if i.Created {
		b.WriteString(", new device")
	} else {
		b.WriteString(", existing device")
	}
	if i.MultiQueue {
		b.WriteString(", multi-queue")
	} else {
		b.WriteString(", single-queue")
	}
	if i.Offloads != 0 {
		fmt.Fprintf(&b, ", offloads %v", i.Offloads)
	}
	if i.Reason != "" {
		fmt.Fprintf(&b, " (%s)", i.Reason)
	}
	if i.RxBatch != "" {
		fmt.Fprintf(&b, ", reads by %s", i.RxBatch)
	}
	return b.String()
}
