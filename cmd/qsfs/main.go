// Command qsfs is the quantum safe filesystem: zdbfs on an in-process zdb
// engine whose files are stored through zstor on many zdb backends,
// evicted under a cache cap, fetched back on demand and restorable on a
// fresh machine from the config alone (docs/qsfs.md).
package main

import (
	"errors"
	"fmt"
	"os"
)

// Exit codes.
const (
	exitOK      = 0
	exitError   = 1
	exitAtRisk  = 2 // status: something is at risk
	exitStopped = 3 // status: qsfs is not running on this directory
)

type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func main() {
	err := newRoot().Execute()
	if err == nil {
		return
	}
	code := exitError
	var ee *codedError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(os.Stderr, "qsfs: "+msg)
	}
	os.Exit(code)
}
