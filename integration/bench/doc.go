// Command bench runs zcnet, stock gVisor and the Linux kernel side by side,
// in one run, driven by the same client code, and prints a table of what
// each moves (issue 6's benchmark). It needs root; without it, it says why
// and exits with status 3.
//
//	sudo go run ./integration/bench                 # 3 runs × 2 s per figure, about 3½ minutes
//	sudo go run ./integration/bench -quick          # 1 run × 300 ms, about 15 s
//	sudo go run ./integration/bench -json out.json  # also the report as JSON
//
// # Contenders (columns)
//
//   - zcnet: a zcnet stack on a 1-queue TAP link with the virtio-net
//     offloads (tap.Open, OffloadOn), serving with the zero-copy sockets of
//     package api: uploads are received with Recv and released unread,
//     downloads sent with SendFunc (whose fill writes nothing: the bytes
//     are whatever the stack's fresh buffer holds, as with a sender of
//     page-cache data), echoes sent back with Send of the received Buf.
//   - zcnet net.Conn: the same stack and link, serving through api.Net's
//     net.Conn and net.PacketConn adapters (one copy in Read, one in Write).
//   - zcnet 2q: a second zcnet stack on a 2-queue TAP (-queues), zero-copy
//     sockets; TCP figures only, for the multi-queue target.
//   - stock gVisor: the same gVisor version built from its public packages
//     only: fdbased on a plain TAP descriptor this command opens itself
//     (tun_linux.go; no virtio-net header, since fdbased enables GSO only for
//     sockets), and gonet's adapters. Its TCP gets zcnet's stack options
//     (4 MiB buffers growing to 16 MiB, SACK, cubic, receive auto-tuning) so
//     that the comparison isolates the link and the socket interface;
//     -stock-defaults gives it gVisor's own defaults instead.
//   - kernel veth: Linux sockets at both ends of a veth pair between two
//     namespaces: the ceiling.
//
// Every link has MTU 1500. The client is always a set of kernel sockets in
// one namespace that holds the kernel side of every TAP and one end of the
// veth pair, each contender on its own subnet of 192.0.2.0/24 (the veth
// on 198.51.100.0/24). The servers of the gVisor stacks run in this
// process; the kernel's in a second namespace.
//
// # Figures (rows)
//
//   - TCP kernel→stack (upload) and stack→kernel (download), 1 and 4
//     streams, Gbit/s of payload: the sender writes 256 KiB at a time until
//     the window closes, then shuts down; the figure is the bytes the
//     receiver read over the time from the window's start to its last EOF.
//   - UDP: 64-byte datagrams from one connected kernel socket, as fast as it
//     sends; the figure is datagrams the server received per second during
//     the window, in millions. The JSON adds the send rate and the share
//     received.
//   - 1-byte round trips per second over one TCP connection, in thousands,
//     unpinned and with the whole process — client, server, and the kernel
//     work their system calls do — pinned to one CPU (-pin): every thread's
//     affinity set to that CPU and GOMAXPROCS 1 (-pin-procs), as a program
//     started under taskset would run, restored afterwards. -pin-procs 0
//     keeps GOMAXPROCS, so its Ps time-share the one CPU; that matters to
//     stock gVisor, whose fdbased reader blocks in ppoll through a plain
//     system call: with one P, other goroutines run only once the runtime's
//     monitor takes that P back (after 20 µs or more).
//   - CPU s/GB for the TCP figures: process CPU time (user + system, all
//     threads, getrusage RUSAGE_SELF) over the measurement, per 10^9
//     payload bytes. It counts client and server together, and the kernel's
//     work in their system calls and in softirqs run in their context; work
//     the kernel defers to ksoftirqd is not counted. The client's share is
//     the same code for every contender.
//
// Each cell is the median of -runs measurements (default 3) of -duration
// each (default 2 s), with the minimum and maximum. Within a run the
// figures go in table order and each figure's contenders one after another,
// starting one further along each run, so that load from elsewhere on the
// machine falls on all of them alike. Below the table, issue 6's targets are
// computed as ratios of medians from this one run, each with "met" or by how
// much it is missed; the net.Conn adapters' ratios are reported beside.
//
// # Bounds and clean-up
//
// Every load loop is bounded in iterations and in time, every connection by
// a deadline. The namespaces are named zcbench-PID-N…, the devices inside
// them zb…; deleting the namespaces (with everything in them) is the last
// step of a run, and also happens on SIGINT or SIGTERM (a second signal, or
// a teardown that takes more than 15 s, forces it and exits). A later run
// deletes namespaces whose PID no longer runs, left by a killed run.
//
// Profile a path by narrowing the run:
//
//	sudo go run ./integration/bench -contenders zcnet -figures tcp_up_1 -runs 1 -duration 10s -cpuprofile up.pprof
//	go tool pprof -top up.pprof
package main
