//go:build race

package tap

// raceEnabled scales load tests down under the race detector.
const raceEnabled = true
