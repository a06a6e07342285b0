// Command bench measures stock gVisor, zcnet and the Linux kernel side by
// side, in one run, as users measure them: every contender's server in a
// process of its own, driven from other processes (the bench's own
// kernel-socket clients, stock iperf3, wrk) in the namespace that holds the
// kernel side of each TAP device. It prints a table, and with -json and
// -svg writes the report and a bar chart. It needs root, ip(8), iperf3 and
// wrk; without them it says why and exits with status 3.
//
//	sudo go run ./integration/bench                          # 3 runs × 5 s per figure, about 10 minutes
//	sudo go run ./integration/bench -quick                   # 1 run × 1 s, under a minute
//	sudo go run ./integration/bench -json out.json -svg out.svg
//
// # Processes
//
// The bench re-runs its own executable with a hidden subcommand, under
// ip netns exec:
//
//   - bench server -mode … (server.go): one per contender. It builds the
//     contender's stack (stacks_linux.go) and serves a TCP echo, a UDP sink
//     that counts datagrams, net/http with a 1 KiB body, and iperf3's
//     protocol (iperf.go); it answers "stats" (its own CPU time from
//     getrusage, its counters), "pin CPU" and "unpin" on stdin, and ends
//     when stdin closes.
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
//   - kernel veth: Linux sockets at both ends of a veth pair between the
//     client namespace and a server namespace; TCP served by stock
//     iperf3 -s. The ceiling, and the unit of the chart.
//
// Each TAP contender has its own /28 of 192.0.2.0/24 (kernel side .1,
// stack .2); the veth pair is 198.51.100.0/24. Every link has MTU 1500.
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
// targets of issues 14 and 15 are computed as ratios of medians from this
// one run, each with what is needed and whether it is met.
//
// # Bounds and clean-up
//
// Every client and every command is bounded in time; servers end when the
// bench closes their stdin, when it dies (Pdeathsig), or after a lifetime
// bound. Namespaces are named zcbench-PID-N…, devices zb…; the TAP devices
// go with the server processes that made them, the veth pair with its
// namespaces. On SIGINT or SIGTERM the bench kills every process it
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
