package main

import (
	"context"
	"errors"

	"qss/zstor/daemon"
)

// The daemon side of the command line: `zstor monitor` runs daemon.Run,
// and every other command first tries the daemon on the config's socket
// (dialDaemon), running in-process only when none listens there.
func init() {
	dialDaemon = func(ctx context.Context, socket string) (remoteOps, error) {
		c, err := daemon.Dial(ctx, socket)
		if errors.Is(err, daemon.ErrNotRunning) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	runMonitor = daemon.Run
	daemonProtocol = daemon.ProtocolVersion
	readQueue = func(socket string) ([]queuedJob, error) {
		js, err := daemon.ReadQueue(socket + ".queue")
		if err != nil {
			return nil, err
		}
		out := make([]queuedJob, len(js))
		for i, j := range js {
			out[i] = queuedJob(j)
		}
		return out, nil
	}
	listJobs = func(ctx context.Context, r remoteOps) ([]queuedJob, error) {
		c, ok := r.(*daemon.Client)
		if !ok {
			return nil, errors.New("zstor queue: not a daemon client")
		}
		js, err := c.Jobs(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]queuedJob, len(js))
		for i, j := range js {
			out[i] = queuedJob(j)
		}
		return out, nil
	}
}
