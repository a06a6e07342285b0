//go:build linux

package file_test

import (
	"context"
	"fmt"
	"os"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/file"
	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/stack"
)

// File operations complete on the same event channels as socket
// operations, so one loop serves both: submit, then take events.
func Example_fileOps() {
	st, _ := stack.New(stack.Options{})
	defer st.Close()
	s, _ := api.New(st, api.Options{FilesOnly: true})
	defer s.Close()
	ec, _ := evchan.New(evchan.Config{Capacity: 16})
	defer ec.Close()

	f, _ := os.CreateTemp("", "zcnet-example-")
	defer os.Remove(f.Name())
	defer f.Close()

	// Two writes at their offsets, as one batch (lio_listio).
	err := s.Submit(context.Background(), false,
		&api.Op{Kind: api.OpWrite, File: file.Request{File: f, Offset: 0, Mem: []byte("hello, ")}, EC: ec, Cookie: 1},
		&api.Op{Kind: api.OpWrite, File: file.Request{File: f, Offset: 7, Mem: []byte("files")}, EC: ec, Cookie: 2},
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	evs := make([]evchan.Event, 2)
	written := int64(0)
	for got := 0; got < 2; {
		n, _ := ec.Next(context.Background(), evs)
		for _, ev := range evs[:n] {
			written += ev.Result
		}
		got += n
	}
	fmt.Println("written:", written)

	// A read of more than the file holds: short, like pread.
	buf := make([]byte, 64)
	s.Submit(context.Background(), false, &api.Op{Kind: api.OpRead, File: file.Request{File: f, Mem: buf}, EC: ec, Cookie: 3})
	n, _ := ec.Next(context.Background(), evs[:1])
	ev := evs[0]
	fmt.Printf("%d event: %v %d bytes %q\n", n, api.OpKind(ev.Op), ev.Result, buf[:ev.Result])
	// Output:
	// written: 12
	// 1 event: read 12 bytes "hello, files"
}
