//go:build linux

package xdp

import (
	"testing"
	"time"
)

// TestInterfaceDeleted deletes the veth under a running link: the
// receive loop must neither spin nor hang, transmit must not panic, and
// Close must free everything.
func TestInterfaceDeleted(t *testing.T) {
	e := newVeth(t)
	e.open(t, Config{Attach: AttachGeneric})
	e.ping(t, stackAddr4)
	e.zns.MustRun("ip", "link", "del", e.zdev)
	before := e.link.Stats()
	// Give a spinning loop time to show itself, bounded.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		writePackets(e.link, 1, 100)
		time.Sleep(10 * time.Millisecond)
	}
	after := e.link.Stats()
	if d := after.RxSleeps - before.RxSleeps; d > 100 {
		t.Errorf("receive loop woke %d times in 300 ms with the interface gone", d)
	}
	t.Logf("after deletion: %+v", after)
	done := make(chan struct{})
	go func() {
		e.link.Close()
		e.link.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not finish in 10 s")
	}
	// Frames the kernel kept when the device went are still on the book:
	// none is lost, they go with the UMEM.
	info := e.link.Info()
	if st := e.link.Stats(); st.FramesRxKernel+st.FramesRxHeld != info.Frames/2 || st.FramesTxFree+st.FramesTxKernel != info.Frames/2 {
		t.Errorf("frames unaccounted after close: %+v", st)
	}
	if after.TxKickErrors == 0 || e.link.Err() == nil {
		t.Errorf("sending on a deleted interface: %d kick errors, Err %v", after.TxKickErrors, e.link.Err())
	}
	t.Logf("Err: %v", e.link.Err())
}
