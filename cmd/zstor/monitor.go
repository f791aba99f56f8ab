package main

import (
	"errors"
	"path/filepath"

	"github.com/spf13/cobra"
)

func (a *app) monitorCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "monitor",
		Short: "run the daemon: commands over the config's socket, a durable queue, health, repair, metrics",
		Long: "Run the zstor daemon until SIGINT or SIGTERM. Other commands go through it when it\n" +
			"listens on the config's socket; store -n queues files on it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runMonitor == nil {
				return errors.New("zstor monitor: daemon not available in this build")
			}
			// The daemon reloads its config on SIGHUP: keep finding it
			// whatever directory the daemon works in.
			path, err := filepath.Abs(a.configPath)
			if err != nil {
				return err
			}
			return runMonitor(cmd.Context(), path, a.log)
		},
	}
}
