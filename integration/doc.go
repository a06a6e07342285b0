// Package integration holds zcnet's tests across processes and namespaces:
// the netstackd daemon attached to real TAP devices in private network
// namespaces, driven from the kernel side by stock tools (curl, socat, ping,
// iperf3) with no code of ours on that side. Library users never need it.
//
// The tests need root (network namespaces, TAP devices); without it each
// skips with a message saying why. Every test makes its own namespace and
// devices, named after the test, and talks only to 192.0.2.0/24 and
// 2001:db8::/32 inside it.
package integration
