package evchan

import (
	"fmt"
	"math/bits"
	"sync"
)

// Names of poster-defined flag bits (16–31), which the posting layer
// defines and evchan cannot know: the layer names them once (package api
// names FlagEOF "eof" and FlagAcked "acked"), and Flags.String prints the
// names instead of a hex mask.
var flagNames struct {
	mu    sync.RWMutex
	names [32 - FlagPosterShift]string // +checklocks:mu; by bit - FlagPosterShift
}

// NameFlag gives the poster-defined flag bit f a name for Flags.String.
// f must be one bit of FlagPosterMask and name non-empty; naming a bit
// again with the same name is a no-op, with another name an error (two
// posting layers disagree about the bit).
func NameFlag(f Flags, name string) error {
	if f&^FlagPosterMask != 0 || bits.OnesCount32(uint32(f)) != 1 || name == "" {
		return fmt.Errorf("evchan: NameFlag(%#x, %q): want one poster-defined bit (16-31) and a name: %w", uint32(f), name, ErrInvalid)
	}
	i := bits.TrailingZeros32(uint32(f)) - FlagPosterShift
	flagNames.mu.Lock()
	defer flagNames.mu.Unlock()
	if old := flagNames.names[i]; old != "" && old != name {
		return fmt.Errorf("evchan: NameFlag: bit %#x is named %q already, not %q: %w", uint32(f), old, name, ErrInvalid)
	}
	flagNames.names[i] = name
	return nil
}

// posterFlagName returns the name of poster bit i (0–15), or "".
func posterFlagName(i int) string {
	flagNames.mu.RLock()
	defer flagNames.mu.RUnlock()
	return flagNames.names[i]
}
