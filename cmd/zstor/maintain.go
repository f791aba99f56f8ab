package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) scrubCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "scrub",
		Short: "verify every shard of every object against its checksum (changes nothing)",
		Long: "Read every shard of every stored object and verify its checksum. Problems are listed\n" +
			"on stdout; the exit status is 1 when there are any ('zstor repair' fixes them).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withOps(cmd.Context(), func(o ops, _ remoteOps) error {
				rep, err := o.Scrub(cmd.Context())
				if err != nil {
					return err
				}
				for _, p := range rep.Problems {
					a.printf("bad shard: %s", p)
				}
				for _, e := range rep.Errors {
					a.printf("cannot scrub: %s", e)
				}
				a.printf("scrubbed %d objects, %d shards: %d missing or corrupt", rep.Objects, rep.Shards, len(rep.Problems))
				if len(rep.Problems) > 0 || len(rep.Errors) > 0 {
					return fmt.Errorf("zstor scrub: %d missing or corrupt shards, %d objects not scrubbed; run 'zstor repair'",
						len(rep.Problems), len(rep.Errors))
				}
				return nil
			})
		},
	}
}

func (a *app) repairCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "repair [PREFIX]",
		Short: "restore full redundancy of every object (under a key prefix)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			return a.withOps(cmd.Context(), func(o ops, _ remoteOps) error {
				rep, err := o.Repair(cmd.Context(), prefix)
				if err != nil {
					return err
				}
				shards := 0
				for _, r := range rep.Repaired {
					a.printf("rebuilt %s: %d shards re-created in %d chunks", r.Key, r.Rebuilt, r.Chunks)
					shards += r.Rebuilt
				}
				for _, e := range rep.Errors {
					a.printf("cannot repair: %s", e)
				}
				a.printf("checked %d objects: %d repaired (%d shards re-created)", rep.Objects, len(rep.Repaired), shards)
				if len(rep.Errors) > 0 {
					return fmt.Errorf("zstor repair: %d objects could not be repaired", len(rep.Errors))
				}
				return nil
			})
		},
	}
}
