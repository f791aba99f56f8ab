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
}
