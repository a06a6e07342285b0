// Package transport is the socket interface netstackd's tools and services
// run over, so that one piece of code measures zcnet and the kernel alike:
// Transport opens TCP listeners and connections and UDP sockets; a receive
// hands over a Chunk the caller releases, a send is a fill function that
// writes straight into the transmit buffer. NewZC is zcnet's zero-copy
// sockets on a stack (with its copy counters, CopyBudget), Kernel the
// process's own network namespace, Net any stack that hands out
// net.Listener and net.Conn (TCP only).
//
// It owns those adapters and their context handling; it does not own the
// stacks, or any protocol spoken over them.
package transport
