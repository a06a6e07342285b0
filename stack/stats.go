package stack

import (
	"net/netip"
	"reflect"
	"sort"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// Counters returns every counter gVisor keeps for the stack, by dotted name
// as in gVisor's tcpip.Stats ("TCP.Retransmits", "IP.PacketsReceived",
// "UDP.ReceiveBufferErrors", …). The set follows the pinned gVisor version;
// names are stable for a given version. Values are monotonic except gauges
// such as TCP.CurrentEstablished.
func (st *Stack) Counters() map[string]uint64 {
	out := make(map[string]uint64, 512)
	s := st.s.Stats()
	walkCounters(reflect.ValueOf(&s).Elem(), "", out)
	return out
}

// CounterNames returns the names Counters reports, sorted.
func (st *Stack) CounterNames() []string {
	c := st.Counters()
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

var statCounterType = reflect.TypeFor[*tcpip.StatCounter]()

// walkCounters collects the *tcpip.StatCounter fields of a stats struct,
// recursing into nested structs and pointers to structs. Maps of counters
// keyed by protocol are skipped: they are sparse and unbounded.
func walkCounters(v reflect.Value, prefix string, out map[string]uint64) {
	t := v.Type()
	for i := 0; i < v.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		name := f.Name
		if prefix != "" {
			name = prefix + "." + f.Name
		}
		switch {
		case f.Type == statCounterType:
			if !fv.IsNil() {
				out[name] = fv.Interface().(*tcpip.StatCounter).Value()
			}
		case f.Type.Kind() == reflect.Struct:
			walkCounters(fv, name, out)
		case f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct && !fv.IsNil():
			walkCounters(fv.Elem(), name, out)
		}
	}
}

// NICStats describes one NIC and its traffic.
type NICStats struct {
	ID          NICID          `json:"id"`
	Name        string         `json:"name"`
	MTU         uint32         `json:"mtu"`
	LinkAddress string         `json:"link_address"`
	Addrs       []netip.Prefix `json:"addrs"`
	Up          bool           `json:"up"`
	RxPackets   uint64         `json:"rx_packets"`
	RxBytes     uint64         `json:"rx_bytes"`
	TxPackets   uint64         `json:"tx_packets"`
	TxBytes     uint64         `json:"tx_bytes"`
	// TxDropsNoBufferSpace counts packets the link refused because its
	// transmit queue was full.
	TxDropsNoBufferSpace uint64 `json:"tx_drops_no_buffer_space"`
	// MalformedL4 counts packets whose transport header did not parse.
	MalformedL4 uint64 `json:"malformed_l4"`
}

// NICs' stats, ordered by ID.
func (st *Stack) NICStats() []NICStats {
	var out []NICStats
	for id, info := range st.s.NICInfo() {
		ns := NICStats{
			ID: id, Name: info.Name, MTU: info.MTU, LinkAddress: info.LinkAddress.String(), Up: info.Flags.Up,
			RxPackets: info.Stats.Rx.Packets.Value(), RxBytes: info.Stats.Rx.Bytes.Value(),
			TxPackets: info.Stats.Tx.Packets.Value(), TxBytes: info.Stats.Tx.Bytes.Value(),
			TxDropsNoBufferSpace: info.Stats.TxPacketsDroppedNoBufferSpace.Value(),
			MalformedL4:          info.Stats.MalformedL4RcvdPackets.Value(),
		}
		for _, pa := range info.ProtocolAddresses {
			ns.Addrs = append(ns.Addrs, netip.PrefixFrom(NetipAddr(pa.AddressWithPrefix.Address), pa.AddressWithPrefix.PrefixLen))
		}
		sort.Slice(ns.Addrs, func(i, j int) bool { return ns.Addrs[i].Addr().Less(ns.Addrs[j].Addr()) })
		out = append(out, ns)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
