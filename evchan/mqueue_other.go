//go:build !linux

package evchan

// POSIX message queues are wrapped for Linux only; elsewhere OpenPosixMQ
// and UnlinkPosixMQ report ErrUnsupported.

func mqOpen(string, int, uint32, int64, int64) (int, error)     { return -1, ErrUnsupported }
func mqUnlink(string) error                                     { return ErrUnsupported }
func mqSend(int, []byte, uint) error                            { return ErrUnsupported }
func mqReceive(int, []byte) (int, uint, error)                  { return 0, 0, ErrUnsupported }
func mqGetAttr(int) (maxmsg, msgsize, curmsgs int64, err error) { return 0, 0, 0, ErrUnsupported }
func mqClose(int) error                                         { return ErrUnsupported }
func isEAGAIN(error) bool                                       { return false }
