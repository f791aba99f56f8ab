package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"qss/zstor"
)

func (a *app) checkCommand() *cobra.Command {
	var file string
	var asJSON bool
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
				if asJSON {
					return a.writeJSON(struct {
						Key      string `json:"key"`
						Checksum string `json:"checksum"`
					}{key, sum.String()})
				}
				a.printf("%s", sum)
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "path of the stored file")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"key", "checksum"} as JSON`)
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
	var asJSON, bytes bool
	cmd := &cobra.Command{
		Use:   "list [PREFIX]",
		Short: "list stored objects (under a key prefix) with size, time and health",
		Long: "List the stored objects whose key starts with PREFIX: size (binary units, or bytes\n" +
			"with --bytes), time stored (UTC), health (shards on reachable backends out of n) and\n" +
			"key. --json prints every field, sizes in bytes.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			return a.withOps(cmd.Context(), func(o ops, _ remoteOps) error {
				return a.list(cmd.Context(), o, prefix, asJSON, bytes)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the objects as JSON")
	cmd.Flags().BoolVar(&bytes, "bytes", false, "sizes in bytes instead of binary units")
	return cmd
}

// entryJSON is one object in list --json.
type entryJSON struct {
	Key       string    `json:"key"`
	Size      int64     `json:"size"`
	Stored    time.Time `json:"stored"`
	Checksum  string    `json:"checksum"`
	Chunks    int       `json:"chunks"`
	K         int       `json:"k"`
	N         int       `json:"n"`
	MinShards int       `json:"min_shards"`
	Health    string    `json:"health"` // healthy, degraded, unreadable
}

func toEntryJSON(e zstor.Entry) entryJSON {
	return entryJSON{Key: e.Key, Size: e.Size, Stored: e.Stored.UTC(), Checksum: e.Checksum.String(), Chunks: e.Chunks,
		K: e.K, N: e.N, MinShards: e.MinShards, Health: strings.ToLower(strings.Fields(health(e))[0])}
}

// list prints one object per line: size, time stored (UTC), health
// (shards on reachable backends out of n), key last since it may hold
// spaces; or with asJSON {"objects": [...], "undecryptable": n}.
func (a *app) list(ctx context.Context, o ops, prefix string, asJSON, bytes bool) error {
	entries, foreign, err := o.List(ctx, prefix)
	if err != nil {
		return err
	}
	if foreign > 0 {
		a.notice("%d metadata records cannot be decrypted with this config's key (stored with another key?)", foreign)
	}
	if asJSON {
		out := struct {
			Objects       []entryJSON `json:"objects"`
			Undecryptable int         `json:"undecryptable"`
		}{Objects: []entryJSON{}, Undecryptable: foreign}
		for _, e := range entries {
			out.Objects = append(out.Objects, toEntryJSON(e))
		}
		return a.writeJSON(out)
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
		size := sizeString(e.Size)
		if bytes {
			size = strconv.FormatInt(e.Size, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", size, e.Stored.UTC().Format(time.RFC3339), health(e), e.Key)
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
