package stack

import (
	"slices"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// sortRoutes orders a route table for gVisor's first-match lookup: longer
// prefixes first, stable among equals so insertion order breaks ties.
func sortRoutes(t []tcpip.Route) {
	slices.SortStableFunc(t, func(a, b tcpip.Route) int {
		return b.Destination.Prefix() - a.Destination.Prefix()
	})
}
