package file_test

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/file"
	"github.com/zcnet/zcnet/api/file/filetest"
	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/evchan/evchantest"
)

// fixedOutcome is what one op of TestFileFixedBuffers produced: the same
// for the fixed and the unfixed path, op by op.
type fixedOutcome struct {
	errno  syscall.Errno
	result int64
	flags  evchan.Flags
	sum    [32]byte // of the bytes a read returned
}

// TestFileFixedBuffers runs the same random reads into and writes from
// pool Bufs — random sizes, random offsets, some across the end of the
// file — on io_uring with the pool registered as fixed buffers and
// without, against a reference model of the file. Every op must run on
// the fixed path in the first (FileCounters.FixedOps), none in the
// second, and both must produce the same completions and the same file.
func TestFileFixedBuffers(t *testing.T) {
	rounds := 40
	if raceEnabled {
		rounds = 15
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	var outcomes [2][]fixedOutcome
	var files [2][]byte
	for mode, noFixed := range []bool{false, true} {
		name := map[bool]string{false: "fixed", true: "unfixed"}[noFixed]
		t.Run(name, func(t *testing.T) {
			pool := newPool(t, 8<<20, 0)
			s := filetest.NewStack(t, file.Config{Engine: file.EngineURing, Rings: 2, Entries: 8, FixedBuffers: !noFixed}, pool)
			r := rand.New(rand.NewPCG(seed, 2))
			model := randBytes(r, 512<<10)
			f := filetest.TempFile(t, "", model)
			ec := evchantest.New(t, 64)
			ops := 0
			for round := 0; round < rounds; round++ {
				// One batch: disjoint ranges, so every read sees the model
				// as it was before the batch; reads and writes past the end
				// do not mix (see TestFileRandomIO).
				type span struct{ off, n int }
				var spans []span
				var batch []*api.Op
				var wants [][]byte
				var datas [][]byte
				readsPast, writesPast := false, false
				for len(batch) < 16 {
					sp := span{r.IntN(len(model) + 32<<10), 1 + r.IntN(64<<10)}
					write := r.IntN(2) == 0
					past := sp.off+sp.n > len(model)
					clash := (past && !write && writesPast) || (past && write && readsPast)
					for _, o := range spans {
						clash = clash || (sp.off < o.off+o.n && o.off < sp.off+sp.n)
					}
					if clash {
						continue
					}
					readsPast = readsPast || (past && !write)
					writesPast = writesPast || (past && write)
					spans = append(spans, sp)
					b, err := s.Reserve(sp.n)
					if err != nil {
						t.Fatal(err)
					}
					op := &api.Op{Kind: api.OpRead, File: file.Request{File: f, Offset: int64(sp.off)}, Buf: b, EC: ec, Cookie: uint64(len(batch))}
					var want, data []byte
					if write {
						data = randBytes(r, sp.n)
						copy(b.Bytes(), data)
						op.Kind = api.OpWrite
					} else {
						want = []byte{}
						if sp.off < len(model) {
							want = bytes.Clone(model[sp.off:min(sp.off+sp.n, len(model))])
						}
					}
					batch = append(batch, op)
					wants = append(wants, want)
					datas = append(datas, data)
				}
				if err := s.Submit(evchantest.Context(t), false, batch...); err != nil {
					t.Fatal(err)
				}
				got := events(t, ec, len(batch))
				for i, op := range batch {
					ev := got[uint64(i)]
					o := fixedOutcome{errno: ev.Errno, result: ev.Result, flags: ev.Flags &^ evchan.FlagInline}
					if op.Kind == api.OpRead {
						rb, ok := api.BufOf(ev)
						if !ok {
							t.Fatalf("read %d at %d: completion %v without its Buf", spans[i].n, op.File.Offset, ev)
						}
						checkRead(t, ev, op, wants[i], rb.Bytes()[:ev.Result], spans[i].n)
						o.sum = sha256.Sum256(rb.Bytes()[:ev.Result])
						if err := rb.Release(); err != nil {
							t.Fatal(err)
						}
					} else if ev.Errno != 0 || ev.Result != int64(len(datas[i])) {
						t.Fatalf("write of %d at %d: %v", len(datas[i]), op.File.Offset, ev)
					}
					outcomes[mode] = append(outcomes[mode], o)
				}
				for i, op := range batch {
					if data := datas[i]; op.Kind == api.OpWrite {
						off := int(op.File.Offset)
						if grow := off + len(data) - len(model); grow > 0 {
							model = append(model, make([]byte, grow)...)
						}
						copy(model[off:], data)
					}
				}
				ops += len(batch)
			}
			disk, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(disk, model) {
				t.Fatalf("file (%d bytes) differs from the model (%d bytes)", len(disk), len(model))
			}
			files[mode] = disk
			c := s.FileCounters()
			t.Logf("%s counters %+v", s.FileEngine(), c)
			if c.Errors != 0 || c.FixedRefused != 0 {
				t.Fatalf("counters %+v", c)
			}
			switch {
			case noFixed && (c.FixedOps != 0 || c.FixedRings != 0):
				t.Fatalf("FixedBuffers off, yet counters %+v", c)
			case !noFixed && (c.FixedOps != uint64(ops) || c.FixedRings == 0 || c.FixedRings > 2):
				t.Fatalf("%d ops from pool Bufs, counters %+v: want all fixed, 1 or 2 rings registered", ops, c)
			}
		})
	}
	if len(outcomes[0]) == 0 || len(outcomes[1]) == 0 {
		return // a mode was skipped or failed
	}
	for i := range outcomes[0] {
		if outcomes[0][i] != outcomes[1][i] {
			t.Fatalf("op %d: fixed %+v, unfixed %+v", i, outcomes[0][i], outcomes[1][i])
		}
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Fatal("the fixed and the unfixed run left different files")
	}
}

// TestFileFixedGrow: a region Grow adds after the rings registered the
// pool is not in their tables, so its Bufs run unfixed, and correctly; the
// first region's still go fixed.
func TestFileFixedGrow(t *testing.T) {
	const slot = 4096
	pool := newPool(t, 64<<10, slot)
	s := filetest.NewStack(t, file.Config{Engine: file.EngineURing, Rings: 1, FixedBuffers: true}, pool)
	f := filetest.TempFile(t, "", nil)
	ec := evchantest.New(t, 8)
	write := func(b api.Buf, off int64) {
		t.Helper()
		if ev := one(t, s, ec, &api.Op{Kind: api.OpWrite, File: file.Request{File: f, Offset: off}, Buf: b}); ev.Errno != 0 || ev.Result != slot {
			t.Fatalf("write at %d: %v", off, ev)
		}
	}
	first, err := s.Reserve(slot)
	if err != nil {
		t.Fatal(err)
	}
	copy(first.Bytes(), bytes.Repeat([]byte{1}, slot))
	write(first, 0) // registers the one region, and runs fixed
	if c := s.FileCounters(); c.FixedRings != 1 || c.FixedOps != 1 {
		t.Fatalf("after the first write: %+v", c)
	}
	// Fill the first region, so that reservations after Grow land in the
	// new one.
	var held []api.Buf
	for {
		b, err := s.Reserve(slot)
		if err != nil {
			break
		}
		held = append(held, b)
	}
	if err := pool.Grow(64 << 10); err != nil {
		t.Fatal(err)
	}
	grown, err := s.Reserve(slot)
	if err != nil {
		t.Fatal(err)
	}
	// (The first region is full: grown lies in the new one.)
	copy(grown.Bytes(), bytes.Repeat([]byte{2}, slot))
	write(grown, slot)
	into, err := s.Reserve(slot)
	if err != nil {
		t.Fatal(err)
	}
	ev := one(t, s, ec, &api.Op{Kind: api.OpRead, File: file.Request{File: f, Offset: slot}, Buf: into})
	rb, ok := api.BufOf(ev)
	if ev.Errno != 0 || ev.Result != slot || !ok || !bytes.Equal(rb.Bytes(), bytes.Repeat([]byte{2}, slot)) {
		t.Fatalf("read into the grown region: %v", ev)
	}
	rb.Release()
	// A Buf of the first region still goes fixed.
	held[0].Bytes()[0] = 3
	write(held[0], 2*slot)
	if c := s.FileCounters(); c.FixedOps != 2 || c.Errors != 0 {
		t.Fatalf("counters %+v: want the two first-region writes fixed, the grown region's ops not", c)
	}
	for _, b := range held[1:] {
		b.Release()
	}
	disk, _ := os.ReadFile(f.Name())
	if len(disk) != 3*slot || disk[0] != 1 || disk[slot] != 2 || disk[2*slot] != 3 {
		t.Fatalf("file holds %d bytes, wrong", len(disk))
	}
}
