// Package link is the contract between zcnet's stack (package stack) and
// the links under it, and what those links share.
//
// It owns:
//
//   - the hooks the stack gives a link and the interfaces a link implements
//     to take them: PayloadHook (PayloadHooker), through which the stack's
//     zero-copy receive sees each received payload view, and ConnLookup and
//     SYNPressure (Admitter), through which a link that budgets TCP
//     segments at listeners asks the stack where a segment would go and
//     tells it when it refuses SYNs. The stack finds them on a link by type
//     assertion when the link is added as a NIC; a link that implements
//     neither still works, but every received byte is then copied;
//   - Admission, the budget every zcnet link puts on the TCP segments it
//     hands to listening sockets, so that no flood of SYNs, ACKs, RSTs or
//     payload at a listener grows the stack's queues without bound (the
//     link asks Check before delivering, counts what is refused, and
//     tells NoteTx what it sends);
//   - the software header split that lets received payload stay where the
//     link wrote it (HeaderLen, SplitPayload, MaxSplitHeader);
//   - the Ethernet framing every zcnet link uses (AddEthernetHeader,
//     ParseEthernetHeader);
//   - Nested, the base of a link that wraps another (capture, impairment):
//     it forwards the link-endpoint methods, and every hook above, to the
//     wrapped link, so a wrapper cannot lose zero-copy or admission by
//     forgetting one.
//
// It does not own any link: the TAP device is package tap, and the
// in-process pair, the shared-memory ring, the AF_XDP socket, the
// impairment and the capture wrappers are the packages below this one. It
// imports neither package stack nor any link, so a program that builds a
// stack links only the links it uses.
package link
