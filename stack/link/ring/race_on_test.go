//go:build race

package ring

// raceEnabled scales load tests down under the race detector.
const raceEnabled = true
