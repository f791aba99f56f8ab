// Command zstor stores files on zdb backends — compressed, encrypted and
// erasure-coded — with the command line and config file of 0-stor_v2
// (zstor_v2), over the client package qss/zstor.
//
//	zstor [-c CONFIG] [-d] [--log_file F] COMMAND
//
// main only wires the signals and the exit code; the commands live in the
// other files of this package (root.go lists them).
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"syscall"
)

func main() {
	// SIGINT and SIGTERM cancel the command's context: a store frees what
	// it wrote, a retrieve removes its temporary file, the daemon drains.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, a second one ends the process at once.
	context.AfterFunc(ctx, stop)
	if path := os.Getenv("ZSTOR_CPUPROFILE"); path != "" {
		// A debugging aid for benchmarks: profile the whole command.
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			defer f.Close()
		}
	}
	if path := os.Getenv("ZSTOR_TRACE"); path != "" {
		// The same for where the time goes between the goroutines
		// (go tool trace): waits a CPU profile does not show.
		if f, err := os.Create(path); err == nil && trace.Start(f) == nil {
			defer f.Close()
		}
	}
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	trace.Stop()
	pprof.StopCPUProfile()
	stop()
	os.Exit(code)
}
