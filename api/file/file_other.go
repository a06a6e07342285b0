//go:build !linux

package file

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Outside Linux there is no file engine: file ops are refused at Submit
// with an error wrapping ErrEngine and errors.ErrUnsupported.

var errNoFileEngine = fmt.Errorf("file operations need Linux: %w", errors.ErrUnsupported)

func newURingBackend(*Engine, Config) (backend, error) { return nil, errNoFileEngine }

type fdPoller struct{}

func newFDPoller(func([]*Op)) (*fdPoller, error)       { return nil, errNoFileEngine }
func (*fdPoller) wait(*Op, int, bool) error            { return errNoFileEngine }
func (*fdPoller) remove(*Op) bool                      { return false }
func (*fdPoller) stop() []*Op                          { return nil }
func runFileOp(*Op, bool) (int64, syscall.Errno, bool) { return 0, syscall.ENOSYS, false }

// DirectAlign reports O_DIRECT's alignment; not available here.
func DirectAlign(*os.File) (mem, offset int, err error) { return 0, 0, errNoFileEngine }

func tryNowait(*Op) (int64, bool, bool) { return 0, false, false }
