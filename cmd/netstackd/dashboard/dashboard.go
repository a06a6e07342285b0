// Package dashboard is netstackd's live dashboard: /dashboard is one HTML
// page (plain JS drawing SVG, no outside assets, embedded in the binary)
// that polls /dashboard.json each second and shows throughput per NIC, connections, pool slots in use,
// event-channel depth, the copy budget and drops by reason. Both the
// -metrics server and the stack's own status service (port 80) serve it.
//
// It owns the page and the JSON snapshot it polls; it does not own the
// HTTP servers that serve them or the services, which add their own
// figures through Sources.Services.
package dashboard

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"reflect"
	"runtime"
	"strings"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack"
)

//go:embed index.html
var page []byte

// Snapshot is the JSON the page polls: counters since start; the page
// turns them into rates.
type Snapshot struct {
	TimeMs      int64             `json:"time_ms"`
	Uptime      string            `json:"uptime"`
	NICs        []NIC             `json:"nics"`
	Connections Conns             `json:"connections"`
	Goroutines  int               `json:"goroutines"`
	Pool        Pool              `json:"pool"`
	Channels    Channels          `json:"event_channels"`
	Copy        Copy              `json:"copy"`
	Drops       map[string]uint64 `json:"drops"`
}

type NIC struct {
	Name      string `json:"name"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
}

type Conns struct {
	TCPEstablished uint64           `json:"tcp_established"` // the stack's, every socket
	Services       map[string]int64 `json:"services"`        // held by the event-loop services
}

type Pool struct {
	SlotsInUse int `json:"slots_in_use"`
	SlotsTotal int `json:"slots_total"`
	SlotSize   int `json:"slot_size"`
}

// Channels sums the services' event channels: events queued, slots
// reserved (queued events and credits held for completions to come) and
// capacity.
type Channels struct {
	Queued   int `json:"queued"`
	Reserved int `json:"reserved"`
	Capacity int `json:"capacity"`
}

type Copy struct {
	RxHandedOver uint64 `json:"rx_handed_over"`
	RxCopied     uint64 `json:"rx_copied"`
	TxInPlace    uint64 `json:"tx_in_place"`
	TxCopied     uint64 `json:"tx_copied"`
}

// Sources are what a snapshot reads. Stack is required; a nil field is left
// out.
type Sources struct {
	Stack *stack.Stack
	API   *api.Stack
	Pool  *dmapool.Pool
	// Link returns the link's stats struct (TAP, pair or ring); its
	// counters whose names say Drop are drops.
	Link    func() any
	Started time.Time
	// Services, if set, adds the program's services to each snapshot:
	// connections, refusals and event channels.
	Services func(*Snapshot)
}

// Take reads src into a snapshot.
func Take(src Sources) Snapshot {
	d := Snapshot{
		TimeMs:     time.Now().UnixMilli(),
		Uptime:     time.Since(src.Started).Round(time.Second).String(),
		Goroutines: runtime.NumGoroutine(),
		Drops:      map[string]uint64{},
	}
	counters := src.Stack.Counters()
	for _, n := range src.Stack.NICStats() {
		d.NICs = append(d.NICs, NIC{Name: n.Name, RxBytes: n.RxBytes, TxBytes: n.TxBytes, RxPackets: n.RxPackets, TxPackets: n.TxPackets})
		AddDrop(d.Drops, "nic "+n.Name+": tx queue full", n.TxDropsNoBufferSpace)
		AddDrop(d.Drops, "nic "+n.Name+": malformed transport header", n.MalformedL4)
	}
	d.Connections.TCPEstablished = counters["TCP.CurrentEstablished"]
	d.Connections.Services = map[string]int64{}
	if src.Services != nil {
		src.Services(&d)
	}
	if src.Pool != nil {
		ps := src.Pool.Stats()
		d.Pool = Pool{SlotsInUse: ps.SlotsInUse, SlotsTotal: ps.SlotsTotal, SlotSize: ps.SlotSize}
	}
	if src.API != nil {
		c := src.API.Counters()
		d.Copy = Copy{RxHandedOver: c.RxHandedOver, RxCopied: c.RxCopied, TxInPlace: c.TxInPlace, TxCopied: c.TxCopied}
		AddDrop(d.Drops, "udp: no association room", c.DropsNoRoom)
		AddDrop(d.Drops, "udp: latest wins, oldest dropped", c.DropsOldest)
		AddDrop(d.Drops, "udp: no pool memory", c.DropsNoPool)
	}
	if src.Link != nil {
		linkDrops(d.Drops, src.Link())
	}
	for name, v := range counters {
		if isDropCounter(name) {
			AddDrop(d.Drops, "stack "+name, v)
		}
	}
	return d
}

// AddDrop adds n drops for reason to m, if there are any.
func AddDrop(m map[string]uint64, reason string, n uint64) {
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
			AddDrop(m, "link "+f.Name, v.Field(i).Uint())
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

// Handle adds the page (GET /dashboard) and its JSON (GET
// /dashboard.json, a Take of src) to mux.
func Handle(mux *http.ServeMux, src Sources) {
	mux.HandleFunc("GET /dashboard", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(page)
	})
	mux.HandleFunc("GET /dashboard.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(Take(src))
	})
}
