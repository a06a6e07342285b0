//go:build !race

package stack

// raceEnabled skips allocation counts under the race detector.
const raceEnabled = false
