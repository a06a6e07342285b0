package nstest

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestCreate makes a namespace as a program does, checks that a socket
// made in Do belongs to it and keeps working after, and that Delete
// removes it once.
func TestCreate(t *testing.T) {
	RequireRoot(t)
	name := UniqueName(t, "zct")
	ns, err := Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Delete() })
	if ns.Name() != name {
		t.Errorf("Name %q, want %q", ns.Name(), name)
	}
	if out, err := ns.Run(10*time.Second, "ip", "-o", "link", "show", "lo"); err != nil || !strings.Contains(out, "UP") {
		t.Fatalf("loopback: %q, %v", out, err)
	}
	if _, err := ns.Run(10*time.Second, "ip", "addr", "add", "192.0.2.1/24", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", "192.0.2.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err == nil {
		c.Close()
		t.Error("192.0.2.1 reachable outside the namespace")
	}
	ln.Close()
	if _, err := Create(name); err == nil {
		t.Error("Create made a namespace whose name is taken")
	}
	if err := ns.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/run/netns/" + name); !os.IsNotExist(err) {
		t.Errorf("namespace still there after Delete: %v", err)
	}
	if err := ns.Delete(); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if err := DeleteNamed(name); err == nil {
		t.Error("DeleteNamed of a deleted namespace succeeded")
	}
}

// TestDeleteLeavesNewsAlone: Delete does nothing to a namespace New made;
// its test's cleanup deletes it.
func TestDeleteLeavesNewsAlone(t *testing.T) {
	ns := New(t)
	if err := ns.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/run/netns/" + ns.Name()); err != nil {
		t.Errorf("New's namespace gone after Delete: %v", err)
	}
}
