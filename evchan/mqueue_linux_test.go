package evchan

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// The "mqsend" helper runs in a child process (the test binary
// re-executed): it opens the queue named by EVCHAN_MQ and sends one
// message, "hello from <pid>", with priority 7.
func init() {
	helperModes["mqsend"] = func() int {
		name := os.Getenv("EVCHAN_MQ")
		m, err := OpenPosixMQ(name, os.O_WRONLY, 0, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer m.Close()
		if err := m.Send([]byte("hello from "+strconv.Itoa(os.Getpid())), 7); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
}

var mqSeq atomic.Int32

// newTestMQ creates a fresh queue, unlinked and closed at the end of the
// test.
func newTestMQ(t *testing.T, attr *MQAttr) *PosixMQ {
	t.Helper()
	name := fmt.Sprintf("/evchan-test-%d-%d", os.Getpid(), mqSeq.Add(1))
	m, err := OpenPosixMQ(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600, attr)
	if errors.Is(err, unix.ENOSYS) {
		t.Skip("kernel without POSIX message queues")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		UnlinkPosixMQ(name)
	})
	return m
}

// TestPosixMQFromAnotherProcess: a message sent by another process
// arrives as an event on the channel.
func TestPosixMQFromAnotherProcess(t *testing.T) {
	c := mustNew(t, 8)
	m := newTestMQ(t, &MQAttr{MaxMsg: 4, MsgSize: 64})
	if err := m.Notify(c, "mq"); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "EVCHAN_HELPER=mqsend", "EVCHAN_MQ="+m.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sender process: %v: %s", err, out)
	}
	ev := next(t, c)
	if ev.Source != SourceMsgQueue || ev.Op != OpPosixMQ || ev.Result != 1 || ev.Data != "mq" || ev.Cookie != uint64(m.FD()) {
		t.Fatalf("event %v", ev)
	}
	buf := make([]byte, 64)
	n, prio, err := m.Receive(buf)
	if err != nil {
		t.Fatal(err)
	}
	if want := "hello from " + strconv.Itoa(cmd.Process.Pid); string(buf[:n]) != want || prio != 7 {
		t.Fatalf("received %q prio %d, want %q prio 7", buf[:n], prio, want)
	}
	if _, _, err := m.Receive(buf); !errors.Is(err, ErrEmpty) {
		t.Fatalf("Receive on empty: %v", err)
	}
}

func TestPosixMQNotifyRules(t *testing.T) {
	c := mustNew(t, 8)
	m := newTestMQ(t, &MQAttr{MaxMsg: 2, MsgSize: 16})
	attr, err := m.Attr()
	if err != nil || attr.MaxMsg != 2 || attr.MsgSize != 16 || attr.CurMsgs != 0 {
		t.Fatalf("Attr = %+v, %v", attr, err)
	}
	if err := m.Send([]byte("one"), 1); err != nil {
		t.Fatal(err)
	}
	// Non-empty at registration: fires at once.
	if err := m.Notify(c, 1); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, c); ev.Data != 1 || ev.Result != 1 {
		t.Fatalf("immediate notification: %v", ev)
	}
	// One-shot, one registration at a time. Arm on the empty queue (on a
	// non-empty one the registration would fire at once and could be gone
	// before the second call): a second registration is refused while the
	// first is armed, and the first fires on the next message.
	buf := make([]byte, 16)
	if n, _, err := m.Receive(buf); err != nil || string(buf[:n]) != "one" {
		t.Fatalf("Receive: %q, %v", buf[:n], err)
	}
	if err := m.Notify(c, 2); err != nil {
		t.Fatal(err)
	}
	if err := m.Notify(c, 3); !errors.Is(err, ErrBusy) {
		t.Fatalf("second registration: %v", err)
	}
	if err := m.Send([]byte("two"), 31); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, c); ev.Data != 2 {
		t.Fatalf("rearmed notification: %v", ev)
	}
	if err := m.Send([]byte("one"), 1); err != nil {
		t.Fatal(err)
	}
	if err := m.Send([]byte("three"), 0); !errors.Is(err, ErrFull) {
		t.Fatalf("Send on a full queue: %v", err)
	}
	if n, prio, _ := m.Receive(buf); string(buf[:n]) != "two" || prio != 31 {
		t.Fatalf("highest priority first: %q %d", buf[:n], prio)
	}
	if _, _, err := m.Receive(make([]byte, 4)); !errors.Is(err, unix.EMSGSIZE) {
		t.Fatalf("short buffer: %v", err)
	}
	m.Receive(buf)
	if err := m.Notify(c, 4); err != nil {
		t.Fatal(err)
	}
	if !m.CancelNotify() {
		t.Fatal("CancelNotify found nothing")
	}
	m.Send([]byte("x"), 0)
	if _, ok := take1(c); ok {
		t.Fatal("cancelled registration fired")
	}
	if err := m.Send(nil, MQPrioMax); !errors.Is(err, ErrInvalid) {
		t.Fatalf("priority out of range: %v", err)
	}
}

func TestPosixMQArgsAndClose(t *testing.T) {
	for _, bad := range []string{"", "/", "noslash", "/a/b", "/" + string(make([]byte, 255))} {
		if _, err := OpenPosixMQ(bad, os.O_RDWR|os.O_CREATE, 0o600, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("OpenPosixMQ(%q): %v", bad, err)
		}
	}
	if _, err := OpenPosixMQ("/evchan-test-x", os.O_RDWR|os.O_CREATE, 0o600, &MQAttr{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("zero attributes: %v", err)
	}
	if _, err := OpenPosixMQ(fmt.Sprintf("/evchan-absent-%d", os.Getpid()), os.O_RDONLY, 0, nil); !errors.Is(err, unix.ENOENT) {
		t.Errorf("absent queue: %v", err)
	}
	c := mustNew(t, 8)
	m := newTestMQ(t, nil)
	if err := m.Notify(c, nil); err != nil {
		t.Fatal(err)
	}
	// Close while armed: the poller registration goes away (goleak checks
	// that the poller goroutine exits) and the reserved slot comes back.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if st := c.Stats(); st.Free != 8 {
		t.Fatalf("slot not returned: %d free", st.Free)
	}
	if err := m.Send(nil, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	if err := m.Notify(c, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Notify after Close: %v", err)
	}
}
