package nstest

import (
	"bytes"
	"fmt"
	"os/exec"
	"sync"
	"time"
)

// Create makes the namespace name with its loopback up, for a program (a
// benchmark harness) rather than a test: nothing deletes it but Delete.
// Run, Cmd and Do work on it as on New's; MustRun, which fails a test,
// does not.
func Create(name string) (*NS, error) {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	ns := &NS{name: name, owned: &sync.Once{}}
	if _, err := ns.Run(10*time.Second, "ip", "link", "set", "lo", "up"); err != nil {
		ns.Delete()
		return nil, err
	}
	return ns, nil
}

// Delete deletes a namespace Create made, with every interface in it once
// the sockets and descriptors that still refer to it are closed. Only the
// first call deletes; the later ones return nil. A namespace New made is
// deleted by its test's cleanup, and Delete leaves it alone.
func (ns *NS) Delete() error {
	if ns.owned == nil {
		return nil
	}
	var err error
	ns.owned.Do(func() { err = DeleteNamed(ns.name) })
	return err
}

// DeleteNamed deletes the namespace name, whoever made it: for a program
// that sweeps what an earlier, killed run left behind.
func DeleteNamed(name string) error {
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}
