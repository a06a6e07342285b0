package main

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"reflect"
	"runtime"
	"strings"
	"time"
)

// The live dashboard: /dashboard is one HTML page (plain JS drawing SVG, no
// outside assets, embedded in the binary) that polls /dashboard.json each
// second and shows throughput per NIC, connections, pool slots in use,
// event-channel depth, the copy budget and drops by reason. Both the
// -metrics server and the stack's own status service (port 80) serve it.

//go:embed dashboard/index.html
var dashboardHTML []byte

// dashboard is the JSON the page polls: counters since start; the page
// turns them into rates.
type dashboard struct {
	TimeMs      int64             `json:"time_ms"`
	Uptime      string            `json:"uptime"`
	NICs        []dashNIC         `json:"nics"`
	Connections dashConns         `json:"connections"`
	Goroutines  int               `json:"goroutines"`
	Pool        dashPool          `json:"pool"`
	Channels    dashChannels      `json:"event_channels"`
	Copy        dashCopy          `json:"copy"`
	Drops       map[string]uint64 `json:"drops"`
}

type dashNIC struct {
	Name      string `json:"name"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
}

type dashConns struct {
	TCPEstablished uint64           `json:"tcp_established"` // the stack's, every socket
	Services       map[string]int64 `json:"services"`        // held by the event-loop services
}

type dashPool struct {
	SlotsInUse int `json:"slots_in_use"`
	SlotsTotal int `json:"slots_total"`
	SlotSize   int `json:"slot_size"`
}

// dashChannels sums the services' event channels: events queued, slots
// reserved (queued events and credits held for completions to come) and
// capacity.
type dashChannels struct {
	Queued   int `json:"queued"`
	Reserved int `json:"reserved"`
	Capacity int `json:"capacity"`
}

type dashCopy struct {
	RxHandedOver uint64 `json:"rx_handed_over"`
	RxCopied     uint64 `json:"rx_copied"`
	TxInPlace    uint64 `json:"tx_in_place"`
	TxCopied     uint64 `json:"tx_copied"`
}

func (s *services) dashboard() dashboard {
	d := dashboard{
		TimeMs:     time.Now().UnixMilli(),
		Uptime:     time.Since(s.started).Round(time.Second).String(),
		Goroutines: runtime.NumGoroutine(),
		Drops:      map[string]uint64{},
	}
	counters := s.st.Counters()
	for _, n := range s.st.NICStats() {
		d.NICs = append(d.NICs, dashNIC{Name: n.Name, RxBytes: n.RxBytes, TxBytes: n.TxBytes, RxPackets: n.RxPackets, TxPackets: n.TxPackets})
		addDrop(d.Drops, "nic "+n.Name+": tx queue full", n.TxDropsNoBufferSpace)
		addDrop(d.Drops, "nic "+n.Name+": malformed transport header", n.MalformedL4)
	}
	d.Connections.TCPEstablished = counters["TCP.CurrentEstablished"]
	d.Connections.Services = map[string]int64{}
	s.mu.Lock()
	ev := s.ev
	s.mu.Unlock()
	if ev != nil {
		for _, ln := range ev.Listeners() {
			d.Connections.Services[ln.Name()] = ln.Conns()
			addDrop(d.Drops, ln.Name()+": refused, event channel full", ln.Refused())
		}
		for _, cs := range ev.ChannelStats() {
			d.Channels.Queued += cs.Queued
			d.Channels.Reserved += cs.Capacity - cs.Free
			d.Channels.Capacity += cs.Capacity
		}
	}
	if s.z.pool != nil {
		ps := s.z.pool.Stats()
		d.Pool = dashPool{SlotsInUse: ps.SlotsInUse, SlotsTotal: ps.SlotsTotal, SlotSize: ps.SlotSize}
	}
	if s.z.zs != nil {
		c := s.z.zs.Counters()
		d.Copy = dashCopy{RxHandedOver: c.RxHandedOver, RxCopied: c.RxCopied, TxInPlace: c.TxInPlace, TxCopied: c.TxCopied}
		addDrop(d.Drops, "udp: no association room", c.DropsNoRoom)
		addDrop(d.Drops, "udp: latest wins, oldest dropped", c.DropsOldest)
		addDrop(d.Drops, "udp: no pool memory", c.DropsNoPool)
	}
	var link any
	switch {
	case s.z.tap != nil:
		link = s.z.tap.Stats()
	case s.z.pair != nil:
		link = s.z.pair.Stats()
	default:
		if rs, ok := s.z.ringStats(); ok {
			link = rs
		}
	}
	linkDrops(d.Drops, link)
	for name, v := range counters {
		if isDropCounter(name) {
			addDrop(d.Drops, "stack "+name, v)
		}
	}
	return d
}

func addDrop(m map[string]uint64, reason string, n uint64) {
	if n > 0 {
		m[reason] += n
	}
}

// linkRejects are the link counters of untrusted input rejected, beside
// those whose names say Drop.
var linkRejects = map[string]bool{"BadOffset": true, "BadLength": true, "BadFlags": true, "NotOwned": true,
	"IndexBackwards": true, "IndexOverrun": true, "HandshakesRefused": true, "RxReadErrors": true}

// linkDrops adds the non-zero drop counters of a link's stats struct
// (whatever the link: TAP, pair or ring), by field name.
func linkDrops(m map[string]uint64, stats any) {
	v := reflect.ValueOf(stats)
	if !v.IsValid() || v.Kind() != reflect.Struct {
		return
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Type.Kind() != reflect.Uint64 {
			continue
		}
		if strings.Contains(f.Name, "Drop") || linkRejects[f.Name] {
			addDrop(m, "link "+f.Name, v.Field(i).Uint())
		}
	}
}

// isDropCounter picks the stack's counters of packets it discarded.
func isDropCounter(name string) bool {
	for _, w := range []string{"Drop", "Malformed", "Invalid", "ChecksumErrors", "BufferErrors"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// handleDashboard adds the page and its JSON to mux.
func (s *services) handleDashboard(mux *http.ServeMux) {
	mux.HandleFunc("GET /dashboard", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(dashboardHTML)
	})
	mux.HandleFunc("GET /dashboard.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(s.dashboard())
	})
}
