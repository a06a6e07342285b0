package file

import (
	"os"
	"syscall"
	"testing"
)

// TestIsDirect checks the O_DIRECT memo that keeps inline attempts away
// from direct I/O.
func TestIsDirect(t *testing.T) {
	dir := t.TempDir()
	plain, err := os.Create(dir + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	fd, _ := fileFD(plain)
	if isDirect(plain, uintptr(fd)) || isDirect(plain, uintptr(fd)) {
		t.Fatal("a buffered file is reported O_DIRECT")
	}
	direct, err := os.OpenFile(dir+"/direct", os.O_RDWR|os.O_CREATE|syscall.O_DIRECT, 0o600)
	if err != nil {
		t.Skipf("no O_DIRECT in %s: %v", dir, err)
	}
	defer direct.Close()
	fd, _ = fileFD(direct)
	if !isDirect(direct, uintptr(fd)) || !isDirect(direct, uintptr(fd)) {
		t.Fatal("an O_DIRECT file is not reported O_DIRECT")
	}
	// The inline attempt leaves it to the workers.
	op := &Op{Kind: Read, Req: &Request{File: direct, Mem: make([]byte, 4096)}}
	op.mem = op.Req.Mem
	if _, ok, _ := tryNowait(op); ok {
		t.Fatal("an O_DIRECT read ran inline")
	}
}
