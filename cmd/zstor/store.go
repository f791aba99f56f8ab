package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"qss/zstor"
)

func (a *app) storeCommand() *cobra.Command {
	var (
		file, keyDir  string
		del, nonBlock bool
		compat        bool
	)
	cmd := &cobra.Command{
		Use:   "store -f PATH [-k KEYDIR] [-d] [-n]",
		Short: "store a file, or every regular file directly inside a directory",
		Long: "Store a file, or every regular file directly inside a directory (not below).\n" +
			"A file whose stored checksum equals the local one is not uploaded again.\n" +
			"0-stor_v2's -s/--save-failure and -e/--error-on-failure are accepted and change\n" +
			"nothing: a failure always gives a non-zero exit, and store -n queues durably.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withOps(cmd.Context(), func(o ops, remote remoteOps) error {
				return a.store(cmd.Context(), o, remote, file, keyDir, zstor.StoreOptions{DeleteLocal: del}, nonBlock)
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "file or directory to store")
	f.StringVarP(&keyDir, "key-path", "k", "", "store under the key the file would have inside this directory")
	f.BoolVarP(&del, "delete", "d", false, "delete the local file after a verified upload")
	f.BoolVarP(&nonBlock, "non-blocking", "n", false, "queue the store on the daemon and return at once")
	f.BoolVarP(&compat, "save-failure", "s", false, "accepted for 0-stor_v2 compatibility")
	f.BoolVarP(&compat, "error-on-failure", "e", false, "accepted for 0-stor_v2 compatibility")
	f.MarkHidden("save-failure")
	f.MarkHidden("error-on-failure")
	cmd.MarkFlagRequired("file")
	return cmd
}

// store stores path (a file, or the regular files directly inside a
// directory). With queue it hands each file to the daemon's durable queue
// instead; without a daemon it stores now and says so. A failure with one
// file of a directory does not stop the others; the command then fails.
func (a *app) store(ctx context.Context, o ops, remote remoteOps, path, keyDir string, opts zstor.StoreOptions, queue bool) error {
	files, err := filesToStore(path)
	if err != nil {
		return err
	}
	if queue && remote == nil {
		why := "no socket configured"
		if a.cfg.Socket != "" {
			why = "none listens on " + a.cfg.Socket
		}
		a.notice("no daemon is running (%s): storing now instead of queueing", why)
	}
	if len(files) == 0 {
		a.printf("nothing to store: no regular files in %s", path)
		return nil
	}
	failed := 0
	for _, file := range files {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("zstor store: interrupted (%v)", err)
		}
		fo := opts
		if keyDir != "" {
			if fo.Key, err = o.KeyFor(filepath.Join(keyDir, filepath.Base(file))); err != nil {
				return err
			}
		}
		if queue && remote != nil {
			err = remote.Queue(ctx, file, fo)
			if err == nil {
				a.printf("queued %s on the daemon", file)
			}
		} else {
			err = a.storeFile(ctx, o, remote != nil, file, fo)
		}
		if err != nil {
			if len(files) == 1 {
				return err
			}
			fmt.Fprintln(a.stderr, oneLine(err))
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("zstor store: %d of the %d files in %s could not be stored", failed, len(files), path)
	}
	return nil
}

// filesToStore returns path itself when it is not a directory (Store
// checks that it is a regular file), else the regular files directly
// inside it, symbolic links to regular files included.
func filesToStore(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("zstor store: %w", err)
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("zstor store: %w", err)
	}
	var files []string
	for _, e := range ents {
		p := filepath.Join(path, e.Name())
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			files = append(files, p)
		}
	}
	return files, nil
}

// storeFile stores one file and reports it, with a progress bar on a
// terminal (in-process only: progress does not cross the daemon's socket).
func (a *app) storeFile(ctx context.Context, o ops, remote bool, path string, opts zstor.StoreOptions) error {
	var bar *progressBar
	if a.tty && !remote {
		if fi, err := os.Stat(path); err == nil {
			bar = a.newBar("store "+filepath.Base(path), fi.Size())
			opts.Progress = bar.add
		}
	}
	res, err := o.Store(ctx, path, opts)
	bar.finish(err == nil)
	if err != nil {
		return err
	}
	deleted := ""
	if opts.DeleteLocal {
		deleted = "; local file deleted"
	}
	if res.Skipped {
		a.printf("skipped %s: unchanged since stored as %s (checksum %s)%s", path, res.Key, res.Checksum, deleted)
		return nil
	}
	replaced := ""
	if res.Replaced {
		replaced = ", replaced the previous version"
	}
	a.printf("stored %s as %s (%d bytes, %d chunks, checksum %s%s)%s",
		path, res.Key, res.Size, res.Chunks, res.Checksum, replaced, deleted)
	return nil
}

func (a *app) retrieveCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "retrieve -f PATH",
		Short: "rebuild a stored file at its path, verified before it appears",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withOps(cmd.Context(), func(o ops, remote remoteOps) error {
				return a.retrieve(cmd.Context(), o, remote != nil, file)
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "path of the file to retrieve (the path it was stored from)")
	cmd.MarkFlagRequired("file")
	return cmd
}

// retrieve rebuilds the file at path from its shards. The client writes a
// temporary file and renames it only once the whole-file checksum
// verified, so a failure leaves nothing behind.
func (a *app) retrieve(ctx context.Context, o ops, remote bool, path string) error {
	var opts zstor.RetrieveOptions
	var bar *progressBar
	if a.tty && !remote {
		// The in-process client can tell the size up front, for a bar
		// with a total.
		if c, ok := o.(*zstor.Client); ok {
			if key, err := c.KeyFor(path); err == nil {
				if rec, err := c.Stat(ctx, key); err == nil {
					bar = a.newBar("retrieve "+filepath.Base(path), rec.Object.Size)
					opts.Progress = bar.add
				}
			}
		}
	}
	res, err := o.Retrieve(ctx, path, opts)
	bar.finish(err == nil)
	if err != nil {
		return err
	}
	a.printf("retrieved %s from %s (%d bytes, checksum %s verified)", path, res.Key, res.Size, res.Checksum)
	if res.BadShards > 0 {
		a.notice("%d shards of %s were missing or corrupt; run 'zstor rebuild -f %s' to restore full redundancy",
			res.BadShards, res.Key, path)
	}
	return nil
}
