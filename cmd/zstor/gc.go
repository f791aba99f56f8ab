package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"qss/zstor"
)

// gcCommand runs a garbage collection in-process (the daemon runs its own,
// slowly, in the background).
func (a *app) gcCommand() *cobra.Command {
	var (
		grace  time.Duration
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "gc [--grace DURATION] [--dry-run]",
		Short: "delete shards that no stored object references (left by crashes and failed frees)",
		Long: "Scan every data backend, then read every metadata record, and delete the shards no record\n" +
			"names that were written more than --grace ago (by the backend's clock) and verify under this\n" +
			"config's key. The grace period must exceed the longest store or repair that may run meanwhile.\n" +
			"Refuses when a record cannot be opened with this key, or when there are no records at all.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if grace <= 0 {
				return usageError{fmt.Errorf("--grace must be positive, got %v", grace)}
			}
			if err := a.loadConfig(); err != nil {
				return err
			}
			c, err := a.openClient(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			rep, err := c.GC(cmd.Context(), zstor.GCOptions{Grace: grace, DryRun: dryRun})
			if err != nil {
				return err
			}
			for _, s := range rep.Skipped {
				a.printf("not scanned: %s", s)
			}
			for _, e := range rep.Errors {
				a.printf("error: %s", e)
			}
			verb, n := "deleted", rep.Deleted
			if dryRun {
				verb, n = "would delete", rep.Garbage
			}
			a.printf("scanned %d backends (%d values) against %d records: %d referenced, %d within the grace period, %d not ours or rewritten; %s %d garbage shards (%d bytes)",
				rep.Backends, rep.Shards, rep.Records, rep.Referenced, rep.Young, rep.Foreign, verb, n, rep.Bytes)
			if len(rep.Skipped) > 0 || len(rep.Errors) > 0 {
				return fmt.Errorf("zstor gc: %d backends not scanned, %d shards not collected", len(rep.Skipped), len(rep.Errors))
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&grace, "grace", zstor.DefaultGCGrace, "keep shards younger than this")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report the garbage, delete nothing")
	return cmd
}
