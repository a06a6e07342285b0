// Package hist is a latency histogram in constant memory: log-linear
// buckets (each power of two cut into 16), quantiles within one bucket's
// width, and a text report with a bar per octave. It owns the counting and
// the printing; it does not time anything itself.
package hist
