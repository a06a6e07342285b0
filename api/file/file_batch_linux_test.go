package file

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/zcnet/zcnet/evchan"
)

// BenchmarkFileBatch measures what handing a batch to the engine in one
// Submit call (one io_uring_enter per batch) saves over one call per op:
// 32 4 KiB reads from the page cache per batch. It drives the engine the
// way api's Submit does (check, reserve the completion slot, submit).
//
//	go test -run '^$' -bench BenchmarkFileBatch ./api/file/
func BenchmarkFileBatch(b *testing.B) {
	const fileSize, blk, batch = 16 << 20, 4 << 10, 32
	f, err := os.CreateTemp(b.TempDir(), "batch")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(fileSize); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, fileSize)
	f.ReadAt(buf, 0) // into the page cache
	for _, eng := range []EngineKind{EngineURing, EngineWorkers} {
		for _, oneCall := range []bool{false, true} {
			b.Run(fmt.Sprintf("%v/one-call=%v", eng, oneCall), func(b *testing.B) {
				e := &Engine{}
				if err := e.Configure(Config{Engine: eng}); err != nil {
					b.Skip(err)
				}
				defer e.Close()
				ec, _ := evchan.New(evchan.Config{Capacity: batch})
				defer ec.Close()
				bufs := make([][]byte, batch)
				for i := range bufs {
					bufs[i] = make([]byte, blk)
				}
				r := rand.New(rand.NewPCG(1, 1))
				evs := make([]evchan.Event, batch)
				ops := make([]*Op, batch)
				b.ResetTimer()
				for n := 0; n < b.N; n += batch {
					for i := range ops {
						op, _ := newTestOp(b, ec, Read, &Request{File: f, Offset: int64(r.IntN(fileSize/blk)) * blk, Mem: bufs[i]}, 0)
						if err := e.Check(op.Kind, op.Req, false); err != nil {
							b.Fatal(err)
						}
						ops[i] = op
					}
					if oneCall {
						e.Submit(ops...)
					} else {
						for _, op := range ops {
							e.Submit(op)
						}
					}
					for got := 0; got < batch; {
						k, err := ec.Next(context.Background(), evs)
						if err != nil {
							b.Fatal(err)
						}
						got += k
					}
				}
			})
		}
	}
}
