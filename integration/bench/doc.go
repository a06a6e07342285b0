// Command bench measures stock gVisor, zcnet and the Linux kernel side by
// side, in one run, as users measure them: every contender's server in a
// process of its own, driven from other processes (the bench's own
// kernel-socket clients, stock iperf3, wrk) in the namespace that holds the
// kernel side of each TAP device. It prints a table, and with -json and
// -svg writes the report and a bar chart. It needs root, ip(8), iperf3,
// wrk and ethtool; without them it says why and exits with status 3.
//
//	sudo go run ./integration/bench                          # 3 runs × 5 s per figure, about 11 minutes
//	sudo go run ./integration/bench -streams                 # and the 32- and 128-stream figures, about 14 minutes
//	sudo go run ./integration/bench -quick                   # 1 run × 1 s, about a minute
//	sudo go run ./integration/bench -json out.json -svg out.svg
//
// # Processes
//
// The bench re-runs its own executable with a hidden subcommand, under
// ip netns exec:
//
//   - bench server -mode … (server.go): one per contender. It builds the
//     contender's stack (stacks_linux.go, stacks_xdp_linux.go) and serves a
//     TCP echo, a UDP sink that counts datagrams, net/http with a 1 KiB
//     body, and iperf3's protocol (package cmd/netstackd/iperf3); it
//     answers "stats" (its own CPU time from getrusage, its counters),
//     "pin CPU" and "unpin" on
//     stdin, and ends when stdin closes. A server whose mode this machine
//     cannot run (no AF_XDP) says so instead of ready, with the reason.
//   - bench client udp|rr (client.go): the UDP senders (-udp-senders
//     processes at once, each one socket sending 64-byte datagrams as fast
//     as it can) and the 1-byte round-trip client.
//
// # Contenders (columns), the table contenderDefs
//
//   - stock gVisor: gVisor's public packages only: fdbased on a plain TAP
//     (no virtio-net header: fdbased enables GSO only for sockets), gonet.
//     Its TCP gets zcnet's stack options (4 MiB buffers growing to 16 MiB,
//     SACK, cubic, receive auto-tuning), so that the comparison isolates the
//     link and the socket interface; -stock-defaults gives it gVisor's own.
//   - zcnet zero-copy: a zcnet stack on a 1-queue TAP with the virtio-net
//     offloads, served through the zero-copy sockets of package api:
//     uploads received with Recv and released unread, downloads sent with
//     SendFunc (whose fill writes nothing, as a sender of page-cache data),
//     UDP received with RecvMsg and released, echoes sent back with Send of
//     the received Buf. No HTTP: net/http needs net.Conn.
//   - zcnet net.Conn: the same kind of stack and link, its own process and
//     TAP, served through api.Net's net.Conn and net.PacketConn adapters.
//   - zcnet 2q: the zero-copy server on a 2-queue TAP; the 4-stream TCP
//     figures only, for the multi-queue target.
//   - zcnet xdp: the zero-copy server on an AF_XDP link (package stack/link/xdp)
//     on queue 0 of one end of a veth pair whose other end is in the
//     client namespace; the server's end is in a namespace of its own.
//     The link takes the interface's MAC address, which the frames its
//     program redirects are addressed to. The client's end sends with
//     transmit checksum offload off (ethtool -K … tx off), so its frames
//     carry complete checksums as frames from a wire do (with offload on,
//     a veth peer leaves them partial; see xdp.Config.PartialChecksums).
//     veth has no zero-copy AF_XDP: the socket runs in copy mode, the
//     program in the driver's (native) hook; the table prints what the
//     link reported. Frames are MTU-sized (no segmentation offload), so
//     its TCP figures are 1-stream only. Where the kernel has no AF_XDP
//     sockets or BPF, the column is left out and the report says why
//     (Report.Unavailable); the run goes on.
//   - kernel xdp veth: the kernel's own sockets (the bench's kernel-mode
//     server) at an address of the kernel's on the same veth end as zcnet
//     xdp, whose program passes the kernel's frames on: the xdp
//     column's reference for UDP; the UDP figure only.
//   - kernel veth: Linux sockets at both ends of a veth pair between the
//     client namespace and a server namespace; TCP served by stock
//     iperf3 -s. The ceiling, and the unit of the chart.
//
// Each TAP contender has its own /28 of 192.0.2.0/24 (kernel side .1,
// stack .2); so has the AF_XDP veth pair (client end .1, stack .2, the
// kernel's own address .3), in zcnet xdp's slot; the kernel's veth pair is
// 198.51.100.0/24. Every link has MTU 1500.
//
// # Figures (rows)
//
//   - UDP 64 B datagrams received per second, while -udp-senders sender
//     processes flood the server; with the rate they offered, and the
//     server's CPU per datagram received.
//   - 1-byte TCP round trips per second, one client process, one
//     connection: pinned (the client started on CPU -pin, the server's
//     threads moved there, both with GOMAXPROCS -pin-procs, default 1: what
//     a Go program started under taskset -c gets) and unpinned; with the
//     server's CPU per round trip. With one P, stock gVisor's fdbased
//     reader, which blocks in ppoll through a plain system call, holds the
//     P until the runtime's monitor takes it back: that is what a user who
//     pins a gVisor server sees.
//   - wrk -t2 -c64 against net/http with a 1 KiB body: requests per second,
//     and server CPU per request.
//   - TCP with stock iperf3 -c: upload (client → server) and download
//     (-R), 1 and 4 streams (-P), iperf3's receiver rate in Gbit/s, and the
//     server's CPU seconds per 10^9 bytes.
//   - With -streams (or named in -figures), the stream-count figures:
//     TCP upload and download with 32 and 128 streams (iperf3
//     -P) on zcnet zero-copy and, for reference, the kernel; besides the
//     aggregate rate and CPU, the sender's retransmissions as a share of
//     the segments sent (iperf3's sum_sent.retransmits where a kernel
//     sends, else the gVisor server's retransmission counter; segments
//     counted as sent bytes / 1448, the MSS at MTU 1500 with timestamps)
//     and the resident memory of the process serving iperf3 (VmRSS in
//     /proc/PID/status, sampled every 50 ms): at the start and the peak. A
//     bench server first returns the memory it no longer uses to the
//     kernel ("release"), so that the peak is this measurement's, not what
//     an earlier one left in the Go heap. For the kernel the process is
//     iperf3 -s, whose socket buffers are kernel memory, not its RSS. They
//     are opt-in because they add about three minutes to the default run.
//
// Server CPU is the server process's user + system time over the
// measurement. It includes the kernel work done in the server's system
// calls (for the TAP stacks, moving every frame in and out) but not what
// the kernel does in the client's context: for the kernel contender, most
// of the receive path of a veth transmit runs there.
//
// Each cell is the median of -runs measurements (default 3) of -duration
// each (default 5 s), with the minimum and maximum. Within a run the
// figures go in table order and each figure's contenders one after
// another, starting one further along each run, so that load from
// elsewhere on the machine falls on all of them alike. Below the table the
// targets (numbered as the table prints them) are computed as ratios of
// medians from this one run (or, for retransmissions, bounds on one
// median), each with what is needed and whether it is met.
//
// # Bounds and clean-up
//
// Every client and every command is bounded in time; servers end when the
// bench closes their stdin, when it dies (Pdeathsig), or after a lifetime
// bound. Namespaces are named zcbench-PID-N…, devices zb…; the TAP devices
// go with the server processes that made them, the veth pairs with their
// namespaces, the AF_XDP program with the server that attached it. On SIGINT or SIGTERM the bench kills every process it
// started and deletes its namespaces (a second signal, or a teardown longer
// than 15 s, forces it); a later run deletes namespaces whose PID no longer
// runs.
//
// Profile a server by narrowing the run:
//
//	sudo go run ./integration/bench -contenders zcnet -figures udp_64 -runs 1 -duration 10s -server-profiles /tmp/prof
//	go tool pprof -top /tmp/prof/zcnet.pprof
//
// There is no in-process mode: a client in the server's process shares its
// Go runtime and scheduler, which hides the per-packet costs being
// measured.
package main
