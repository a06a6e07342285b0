//go:build race

package impair

// raceEnabled reports whether the race detector is on; the integrity test
// sizes its TCP transfer by it.
const raceEnabled = true
