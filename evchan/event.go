package evchan

import (
	"fmt"
	"strconv"
	"syscall"
)

// Event is one entry of a channel: the paper's event_data_t (§4). It is a
// fixed-size value of 64 bytes (one cache line on amd64/arm64) and moves
// through the ring by copy, so posting and taking an event allocate nothing
// as long as Data and Buffer hold pointer-shaped values (pointers, maps,
// channels, funcs); a non-pointer value stored in an interface allocates
// when it is boxed, before it reaches evchan.
//
// Layout (amd64):
//
//	offset size field
//	     0    1 Source
//	     2    2 Op
//	     4    4 Flags
//	     8    8 Result
//	    16    8 Errno
//	    24    8 Cookie
//	    32   16 Data
//	    48   16 Buffer
//
// What Op, Result and Cookie mean depends on Source; the table below is
// the contract for the sources in this package. Posters from other packages
// (api for SourceNetOp, a file engine for SourceFileOp) document theirs.
//
//	Source          Op                          Result                                  Cookie
//	SourceTimer     0                           expirations since the last event (≥ 1)  0
//	SourceSignal    signal number               deliveries since the last event (≥ 1)   0
//	SourceSem       OpAcquire                   1 (units acquired)                      0
//	SourceMutex     OpLock or OpRLock           0                                       0
//	SourceMsgQueue  OpMsgQueue or OpPosixMQ     messages queued when the event was made the mqd (POSIX) or 0
//	SourceFDReady   FDEvents seen (OR-merged)   readiness edges since the last event    the fd
//	SourceOverflow  0                           notifications lost since the last one   0
type Event struct {
	// Source says which kind of producer made the event.
	Source Source
	// Op is the operation code within Source (for example api's op codes
	// for SourceNetOp, OpLock for SourceMutex, FDEvents for SourceFDReady).
	Op uint16
	// Flags carries FlagInline, FlagMore and poster-defined bits.
	Flags Flags
	// Result is the operation's result: a byte count, a count of merged
	// notifications, or another value documented per Source.
	Result int64
	// Errno is 0 on success, else the error of the operation.
	Errno syscall.Errno
	// Cookie is the submitter's 64-bit tag, returned unchanged.
	Cookie uint64
	// Data is the submitter's user data, the paper's void *data, returned
	// unchanged.
	Data any
	// Buffer is, for a receive completion, the buffer handed over to the
	// consumer: whoever takes the event takes ownership of it. Nil for
	// events that carry no buffer.
	Buffer any
}

// String formats the event for logs and test failures.
func (e Event) String() string {
	b := make([]byte, 0, 96)
	b = append(b, "evchan.Event{"...)
	b = append(b, e.Source.String()...)
	b = append(b, " op="...)
	b = strconv.AppendUint(b, uint64(e.Op), 10)
	if e.Source == SourceFDReady {
		b = append(b, '(')
		b = append(b, FDEvents(e.Op).String()...)
		b = append(b, ')')
	}
	if e.Flags != 0 {
		b = append(b, " flags="...)
		b = append(b, e.Flags.String()...)
	}
	b = append(b, " result="...)
	b = strconv.AppendInt(b, e.Result, 10)
	if e.Errno != 0 {
		b = append(b, " errno="...)
		b = append(b, e.Errno.Error()...)
	}
	if e.Cookie != 0 {
		b = append(b, " cookie=0x"...)
		b = strconv.AppendUint(b, e.Cookie, 16)
	}
	if e.Data != nil {
		b = fmt.Appendf(b, " data=%v", e.Data)
	}
	if e.Buffer != nil {
		b = fmt.Appendf(b, " buffer=%T", e.Buffer)
	}
	b = append(b, '}')
	return string(b)
}

// Source is the kind of producer of an event.
type Source uint8

// Sources. The zero value is SourceUnknown so that a zeroed Event is
// recognisable.
const (
	SourceUnknown  Source = iota
	SourceNetOp           // completion of a socket operation (api)
	SourceFileOp          // completion of a file operation
	SourceTimer           // a Timer expired
	SourceSignal          // an OS signal arrived (NotifySignal)
	SourceSem             // Sem.Await acquired a unit
	SourceMutex           // Mutex.ALock, RWMutex.ALock or RWMutex.ARLock acquired the lock
	SourceMsgQueue        // a message queue became non-empty (MsgQueue.Notify, PosixMQ.Notify)
	SourceFDReady         // an fd watched with WatchFD became ready
	SourceUser            // posted by the application
	SourceOverflow        // notifications were lost; Result counts them

	numSources
)

var sourceNames = [numSources]string{
	SourceUnknown:  "unknown",
	SourceNetOp:    "netop",
	SourceFileOp:   "fileop",
	SourceTimer:    "timer",
	SourceSignal:   "signal",
	SourceSem:      "sem",
	SourceMutex:    "mutex",
	SourceMsgQueue: "msgqueue",
	SourceFDReady:  "fdready",
	SourceUser:     "user",
	SourceOverflow: "overflow",
}

// String returns the source's short name.
func (s Source) String() string {
	if s < numSources {
		return sourceNames[s]
	}
	return "source(" + strconv.Itoa(int(s)) + ")"
}

// Op codes of the sources in this package.
const (
	// OpAcquire: SourceSem, one unit acquired.
	OpAcquire uint16 = 1
	// OpLock: SourceMutex, the lock is held exclusively.
	OpLock uint16 = 1
	// OpRLock: SourceMutex, the RWMutex is held shared.
	OpRLock uint16 = 2
	// OpMsgQueue: SourceMsgQueue from an in-process MsgQueue.
	OpMsgQueue uint16 = 1
	// OpPosixMQ: SourceMsgQueue from a PosixMQ.
	OpPosixMQ uint16 = 2
)

// Flags are per-event bits.
//
//	bit    name         meaning
//	0      FlagInline   the operation completed at submission, without waiting
//	1      FlagMore     a multishot operation will post further completions
//	2-15   reserved     for evchan
//	16-31  FlagPoster   defined by the posting layer (api, a file engine)
type Flags uint32

// Flag bits; see the table on Flags.
const (
	FlagInline Flags = 1 << 0
	FlagMore   Flags = 1 << 1

	// FlagPosterShift is the first bit the posting layer may define.
	FlagPosterShift = 16
	// FlagPosterMask selects the poster-defined bits.
	FlagPosterMask Flags = 0xffff << FlagPosterShift
)

// String names the set bits: "inline", "more", the names poster-defined
// bits were given (NameFlag), and the rest as a hex mask.
func (f Flags) String() string {
	if f == 0 {
		return "0"
	}
	var b []byte
	add := func(s string) {
		if len(b) > 0 {
			b = append(b, '|')
		}
		b = append(b, s...)
	}
	if f&FlagInline != 0 {
		add("inline")
	}
	if f&FlagMore != 0 {
		add("more")
	}
	rest := f &^ (FlagInline | FlagMore)
	for i := 0; i < 32-FlagPosterShift; i++ {
		bit := Flags(1) << (FlagPosterShift + i)
		if rest&bit == 0 {
			continue
		}
		if name := posterFlagName(i); name != "" {
			add(name)
			rest &^= bit
		}
	}
	if rest != 0 {
		add("0x" + strconv.FormatUint(uint64(rest), 16))
	}
	return string(b)
}

// FDEvents is a readiness mask: what WatchFD asks for, and what a
// SourceFDReady event reports in Op. The values are evchan's own, mapped to
// epoll's bits on Linux.
type FDEvents uint16

// Readiness bits.
const (
	Readable   FDEvents = 1 << iota // data to read, or a peer closed (EPOLLIN)
	Writable                        // room to write (EPOLLOUT)
	Priority                        // urgent data (EPOLLPRI)
	ReadHangup                      // the peer shut down its writing side (EPOLLRDHUP)
	Hangup                          // hang-up; always reported (EPOLLHUP)
	Error                           // error condition; always reported (EPOLLERR)
)

// String names the set bits.
func (m FDEvents) String() string {
	if m == 0 {
		return "0"
	}
	names := [...]string{"in", "out", "pri", "rdhup", "hup", "err"}
	var b []byte
	for i, n := range names {
		if m&(1<<i) != 0 {
			if len(b) > 0 {
				b = append(b, '|')
			}
			b = append(b, n...)
		}
	}
	if rest := m &^ (1<<len(names) - 1); rest != 0 {
		if len(b) > 0 {
			b = append(b, '|')
		}
		b = append(b, "0x"...)
		b = strconv.AppendUint(b, uint64(rest), 16)
	}
	return string(b)
}
