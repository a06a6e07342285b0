// Package iperf3 speaks iperf3's control and data protocol over a
// transport.Transport, so that zcnet's sockets and the kernel's are
// measured by one implementation, against stock iperf3 on either side: a
// Server (iperf3 -s: one test at a time, TCP and UDP, reverse, parallel
// streams, one-off) and RunClient (iperf3 -c), with iperf3's limits,
// pacing, interval samples, and its text and JSON reports (Report).
//
// It owns the protocol, the test's data loops and the reports; it does not
// own sockets (package transport), flags (netstackd's perf command parses
// them into a Spec) or where the output goes (ServerConfig.Out,
// ClientConfig.Out).
package iperf3
