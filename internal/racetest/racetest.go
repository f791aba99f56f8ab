// Package racetest carries the race detector into the helper processes of
// tests: a test binary built with -race builds its helper binaries (zdb,
// zstor, zdbfs) with -race too, and fails the test when a helper reports a
// data race. Without -race it does nothing.
package racetest

import (
	"os"
	"strings"
	"testing"
)

// Enabled reports whether this binary was built with the race detector.
const Enabled = enabled

// report starts every report of the race detector.
const report = "WARNING: DATA RACE"

func init() {
	// A race-built process sleeps a second at exit (GORACE's
	// atexit_sleep_ms, 1000 by default) for late reports; tests stop
	// helper processes by the hundred, so theirs exit at once. The
	// helpers inherit the variable; this process read it at start.
	if g := os.Getenv("GORACE"); Enabled && !strings.Contains(g, "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(g+" atexit_sleep_ms=0"))
	}
}

// BuildFlags are the extra go build flags of a helper binary: -race when
// this test binary has the race detector.
func BuildFlags() []string {
	if Enabled {
		return []string{"-race"}
	}
	return nil
}

// Check fails t when output (what the helper process name printed) holds a
// race detector report.
func Check(t testing.TB, name, output string) {
	t.Helper()
	if i := strings.Index(output, report); i >= 0 {
		t.Errorf("%s: the race detector reported a data race:\n%s", name, output[i:])
	}
}
