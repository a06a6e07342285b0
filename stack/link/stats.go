package link

// Totals are the counts every zcnet link keeps, whatever else it counts:
// frames and bytes received and sent, as the link's own Stats defines
// them (a link's Stats says which frames it counts as received: read from
// the device, or delivered to the stack). All are monotonic.
type Totals struct {
	RxFrames, RxBytes uint64
	TxFrames, TxBytes uint64
}

// Counted is a link that reports its Totals, so that code watching links
// (a metrics exporter, a test) reads them the same way for every link.
// Nested reports its inner link's.
type Counted interface {
	Totals() Totals
}

// Totals implements Counted with the inner link's Totals; zero when the
// inner link does not report them.
func (n *Nested) Totals() Totals {
	if c, ok := n.inner.(Counted); ok {
		return c.Totals()
	}
	return Totals{}
}
