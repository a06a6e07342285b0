package api

import "github.com/zcnet/zcnet/evchan"

// The names evchan.Flags.String prints for this package's flag bits.
func init() {
	for _, f := range []struct {
		f    evchan.Flags
		name string
	}{{FlagEOF, "eof"}, {FlagAcked, "acked"}} {
		if err := evchan.NameFlag(f.f, f.name); err != nil {
			// Two layers claim one bit: a programming error that would
			// make every completion's flags ambiguous.
			panic(err)
		}
	}
}
