// Package hostile crafts the frames a hostile or broken peer sends — bad
// lengths, bad checksums, impossible TCP flag combinations, overlapping and
// oversized fragments, malformed options — and writes them onto a network
// device from the kernel's side, for zcnet's reliability tests.
//
// Frames are built with gVisor's header package, byte by byte, so a test
// states exactly which rule a frame breaks: Net builds well-formed frames
// between two hosts (Ethernet, IPv4 or IPv6, TCP, UDP, ICMP, fragments) and
// the mutators (BadIPv4Checksum, BadL4Checksum, SetIPv4TotalLength, …) then
// break one field. An Injector is an AF_PACKET socket bound to a device: a
// frame written to it leaves through the device as it is, without the
// kernel's IP stack checking or repairing anything, so a TAP device hands it
// to the link on its other side unchanged.
//
// The package owns building frames and the injector's socket. It knows
// nothing of stacks, links or counters: which counter must account for which
// frame is the test's to say. Library users never need it.
package hostile
