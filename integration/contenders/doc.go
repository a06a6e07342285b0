// Package contenders builds what the integration harnesses (integration/bench
// and integration/flood) measure zcnet against, and the client side they
// share: stock gVisor as a user of its public packages builds it (a plain TAP
// device, fdbased, gonet), echo servers over package net's shapes, and echo
// clients that check what comes back. It owns those constructions; it does
// not own namespaces (integration/nstest), zcnet's stacks, processes or the
// figures the harnesses report.
package contenders
