package ring

import "testing"

// FuzzValidate feeds arbitrary descriptor bytes to the validator: it must
// never panic, and whatever it accepts must lie inside one frame of the
// sender's partition and inside the segment.
func FuzzValidate(f *testing.F) {
	lay := layout{slots: 64, frames: 32, frameSize: 2048}
	seed := func(off uint64, n, flags uint32) []byte {
		b := make([]byte, descSize)
		putDesc(b, desc{off: off, len: n, flags: flags})
		return b
	}
	f.Add(seed(uint64(lay.frameOff(32)), 60, 0), uint8(1))
	f.Add(seed(uint64(lay.frameOff(0)), 60, 0), uint8(0))
	f.Add(seed(1<<40, 60, 0), uint8(1))
	f.Add(seed(uint64(lay.frameOff(63))+2047, 1, 0), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, side uint8) {
		if len(b) < descSize {
			return
		}
		d := getDesc(b)
		lo := uint32(side&1) * lay.frames
		i, err := lay.validate(d, lo)
		if err != nil {
			return
		}
		if i < lo || i >= lo+lay.frames {
			t.Fatalf("accepted frame %d outside [%d, %d)", i, lo, lo+lay.frames)
		}
		start := uint64(lay.frameOff(i))
		if d.off < start || d.off+uint64(d.len) > start+uint64(lay.frameSize) || d.off+uint64(d.len) > uint64(lay.size()) || d.len == 0 {
			t.Fatalf("accepted %+v: not inside frame %d at %d", d, i, start)
		}
	})
}
