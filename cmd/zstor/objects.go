package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"qss/zstor"
)

func (a *app) checkCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "check -f PATH",
		Short: "print the stored checksum (hex) of a file; exit 1 when it is not stored",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withOps(cmd.Context(), func(o ops, _ remoteOps) error {
				key, err := o.KeyFor(file)
				if err != nil {
					return err
				}
				sum, err := o.Check(cmd.Context(), key)
				if err != nil {
					return err
				}
				a.printf("%s", sum)
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "path of the stored file")
	cmd.MarkFlagRequired("file")
	return cmd
}

func (a *app) deleteCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "delete -f PATH",
		Short: "delete a stored file: its metadata, then its shards",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withOps(cmd.Context(), func(o ops, _ remoteOps) error {
				key, err := o.KeyFor(file)
				if err != nil {
					return err
				}
				leaked, err := o.Delete(cmd.Context(), key)
				if err != nil {
					return err
				}
				a.printf("deleted %s", key)
				if leaked > 0 {
					a.notice("%d shards of %s sit on unreachable backends and could not be freed", leaked, key)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "path of the stored file")
	cmd.MarkFlagRequired("file")
	return cmd
}

func (a *app) listCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list [PREFIX]",
		Short: "list stored objects (under a key prefix) with size, time and health",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			return a.withOps(cmd.Context(), func(o ops, _ remoteOps) error {
				return a.list(cmd.Context(), o, prefix)
			})
		},
	}
}

// list prints one object per line: size in bytes, time stored (UTC),
// health (shards on reachable backends out of n), key last since it may
// hold spaces.
func (a *app) list(ctx context.Context, o ops, prefix string) error {
	entries, foreign, err := o.List(ctx, prefix)
	if err != nil {
		return err
	}
	if foreign > 0 {
		a.notice("%d metadata records cannot be decrypted with this config's key (stored with another key?)", foreign)
	}
	if len(entries) == 0 {
		if prefix != "" {
			a.printf("no stored objects under %q", prefix)
		} else {
			a.printf("no stored objects")
		}
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SIZE\tSTORED\tHEALTH\tKEY")
	for _, e := range entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.Size, e.Stored.UTC().Format(time.RFC3339), health(e), e.Key)
	}
	return tw.Flush()
}

// health says whether an object has all n shards on reachable backends
// ("healthy 6/6"), fewer but at least k ("degraded 5/6"), or fewer than k
// ("UNREADABLE 3/6").
func health(e zstor.Entry) string {
	state := "healthy"
	switch {
	case e.MinShards < e.K:
		state = "UNREADABLE"
	case e.MinShards < e.N:
		state = "degraded"
	}
	return fmt.Sprintf("%s %d/%d", state, e.MinShards, e.N)
}

func (a *app) rebuildCommand() *cobra.Command {
	var file, key string
	cmd := &cobra.Command{
		Use:   "rebuild -f PATH | -k KEY",
		Short: "re-create the missing or corrupt shards of a stored file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (file == "") == (key == "") {
				return usageError{errors.New("rebuild: give exactly one of -f PATH and -k KEY")}
			}
			return a.withOps(cmd.Context(), func(o ops, _ remoteOps) error {
				k := key
				if file != "" {
					var err error
					if k, err = o.KeyFor(file); err != nil {
						return err
					}
				}
				res, err := o.Rebuild(cmd.Context(), k)
				if err != nil {
					return err
				}
				if res.Rebuilt == 0 {
					a.printf("%s: every shard is present and valid, nothing to rebuild", res.Key)
					return nil
				}
				a.printf("rebuilt %s: %d shards re-created in %d chunks", res.Key, res.Rebuilt, res.Chunks)
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "path of the stored file")
	cmd.Flags().StringVarP(&key, "key", "k", "", "object key (the path relative to root)")
	return cmd
}
