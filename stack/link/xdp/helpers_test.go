//go:build linux

package xdp

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

func socketXDP() (int, error) { return unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0) }
func closeFD(fd int)          { unix.Close(fd) }

// hashWriter writes n seeded pseudo-random bytes to w and returns their hash.
func hashWriter(w io.Writer, n int64) ([32]byte, error) {
	h := sha256.New()
	r := rand.New(rand.NewPCG(1, uint64(n)))
	buf := make([]byte, 64<<10)
	for n > 0 {
		k := min(int64(len(buf)), n)
		for i := range buf[:k] {
			buf[i] = byte(r.Uint32())
		}
		h.Write(buf[:k])
		if _, err := w.Write(buf[:k]); err != nil {
			return [32]byte{}, err
		}
		n -= k
	}
	if c, ok := w.(interface{ CloseWrite() error }); ok {
		_ = c.CloseWrite()
	}
	return [32]byte(h.Sum(nil)), nil
}

// hashReader reads exactly n bytes from r and returns their hash.
func hashReader(r io.Reader, n int64) ([32]byte, error) {
	h := sha256.New()
	if _, err := io.CopyN(h, r, n); err != nil {
		return [32]byte{}, err
	}
	return [32]byte(h.Sum(nil)), nil
}

// runChild is the child of TestKilledDetaches: it attaches a link to dev
// (in the namespace it was started in), says "ready" and waits to be
// killed. It never closes the link.
func runChild(dev string) int {
	l, err := Open(Config{Interface: dev, Frames: 64})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Printf("ready %s\n", l.Info().AttachString())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	<-ch
	return 0
}

// readLine reads one line from c, for the child's "ready".
func readLine(r io.Reader) (string, error) {
	s, err := bufio.NewReader(r).ReadString('\n')
	return s, err
}
