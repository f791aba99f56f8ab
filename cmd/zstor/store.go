package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"qss/zstor"
)

func (a *app) storeCommand() *cobra.Command {
	var (
		file, keyDir  string
		del, nonBlock bool
		compat        bool
		recursive     bool
		excludes      []string
	)
	cmd := &cobra.Command{
		Use:   "store -f PATH [-r] [--exclude PATTERN]... [-k KEYDIR] [-d] [-n]",
		Short: "store a file, every regular file directly inside a directory, or a whole tree (-r)",
		Long: "Store a file, or every regular file directly inside a directory (not below), as\n" +
			"0-stor_v2 does; with -r, everything below the directory: regular files, and symbolic\n" +
			"links as links. --exclude PATTERN (repeatable, shell patterns as in filepath.Match)\n" +
			"skips every file or directory whose name, or path relative to PATH, matches.\n" +
			"Special files (FIFOs, sockets, devices) and dangling links are reported on stderr\n" +
			"and not stored; they do not make the command fail.\n" +
			"A file whose stored checksum equals the local one is not uploaded again; a file that\n" +
			"changes while it is read is read again, and after 3 tries the store fails.\n" +
			"0-stor_v2's -s/--save-failure and -e/--error-on-failure are accepted and change\n" +
			"nothing: a failure always gives a non-zero exit, and store -n queues durably.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, p := range excludes {
				if _, err := filepath.Match(p, ""); err != nil {
					return usageError{fmt.Errorf("--exclude %q: %w", p, err)}
				}
			}
			return a.withOps(cmd.Context(), func(o ops, remote remoteOps) error {
				w := walkOptions{recursive: recursive, excludes: excludes}
				return a.store(cmd.Context(), o, remote, file, keyDir, w, zstor.StoreOptions{DeleteLocal: del}, nonBlock)
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "file or directory to store")
	f.StringVarP(&keyDir, "key-path", "k", "", "store under the key the file would have inside this directory")
	f.BoolVarP(&del, "delete", "d", false, "delete the local file after a verified upload")
	f.BoolVarP(&nonBlock, "non-blocking", "n", false, "queue the store on the daemon and return at once")
	f.BoolVarP(&recursive, "recursive", "r", false, "store the whole tree below a directory")
	f.StringArrayVar(&excludes, "exclude", nil, "skip files and directories matching this pattern (repeatable)")
	f.BoolVarP(&compat, "save-failure", "s", false, "accepted for 0-stor_v2 compatibility")
	f.BoolVarP(&compat, "error-on-failure", "e", false, "accepted for 0-stor_v2 compatibility")
	f.MarkHidden("save-failure")
	f.MarkHidden("error-on-failure")
	cmd.MarkFlagRequired("file")
	return cmd
}

// walkOptions say which files of a directory a store takes.
type walkOptions struct {
	recursive bool
	excludes  []string
}

// excluded reports whether name (a base name) or rel (its path relative to
// the directory stored) matches an --exclude pattern.
func (w walkOptions) excluded(name, rel string) bool {
	for _, p := range w.excludes {
		if ok, _ := filepath.Match(p, name); ok {
			return true
		}
		if ok, _ := filepath.Match(p, rel); ok {
			return true
		}
	}
	return false
}

// toStore is one file a store takes: its path, its path relative to the
// directory given (its base name for a single file), and whether it is a
// symbolic link stored as a link.
type toStore struct {
	path, rel string
	link      bool
}

// store stores path (a file, the regular files directly inside a directory,
// or with w.recursive the whole tree). With queue it hands each file to the
// daemon's durable queue instead; without a daemon it stores now and says
// so. A failure with one file of a directory does not stop the others; the
// command then fails. Entries that cannot be stored (special files, dangling
// links) are reported on stderr.
func (a *app) store(ctx context.Context, o ops, remote remoteOps, path, keyDir string, w walkOptions, opts zstor.StoreOptions, queue bool) error {
	files, skipped, walkErrs, err := filesToStore(path, w)
	if err != nil {
		return err
	}
	for _, s := range skipped {
		a.notice("skipped %s", s)
	}
	for _, e := range walkErrs {
		fmt.Fprintln(a.stderr, oneLine(e))
	}
	if queue && remote == nil {
		why := "no socket configured"
		if a.cfg.Socket != "" {
			why = "none listens on " + a.cfg.Socket
		}
		a.notice("no daemon is running (%s): storing now instead of queueing", why)
	}
	if len(files) == 0 && len(walkErrs) == 0 {
		a.printf("nothing to store: no regular files in %s", path)
		return nil
	}
	failed := len(walkErrs)
	for _, file := range files {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("zstor store: interrupted (%v)", err)
		}
		fo := opts
		fo.Links = file.link
		if keyDir != "" {
			if fo.Key, err = o.KeyFor(filepath.Join(keyDir, file.rel)); err != nil {
				return err
			}
		}
		if queue && remote != nil && !file.link {
			err = remote.Queue(ctx, file.path, fo)
			if err == nil {
				a.printf("queued %s on the daemon", file.path)
			}
		} else {
			err = a.storeFile(ctx, o, file.path, fo)
		}
		if err != nil {
			if len(files) == 1 && failed == 0 {
				return err
			}
			fmt.Fprintln(a.stderr, oneLine(err))
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("zstor store: %d of the %d files in %s could not be stored", failed, len(files)+len(walkErrs), path)
	}
	return nil
}

// filesToStore returns path itself when it is not a directory (Store
// checks that it is a regular file), else the files of the directory: the
// regular files directly inside it (symbolic links to regular files
// included), or with w.recursive every regular file and symbolic link
// below it. skipped describes each entry left out for its type; errs are
// entries that could not be read.
func filesToStore(path string, w walkOptions) (files []toStore, skipped []string, errs []error, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("zstor store: %w", err)
	}
	if !fi.IsDir() {
		return []toStore{{path: path, rel: filepath.Base(path)}}, nil, nil, nil
	}
	if !w.recursive {
		ents, err := os.ReadDir(path)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("zstor store: %w", err)
		}
		subdirs := 0
		for _, e := range ents {
			p := filepath.Join(path, e.Name())
			if w.excluded(e.Name(), e.Name()) {
				continue
			}
			fi, err := os.Stat(p)
			switch {
			case err != nil && e.Type()&fs.ModeSymlink != 0:
				skipped = append(skipped, fmt.Sprintf("%s: a dangling symbolic link", p))
			case err != nil:
				errs = append(errs, fmt.Errorf("zstor store: %w", err))
			case fi.Mode().IsRegular():
				files = append(files, toStore{path: p, rel: e.Name()})
			case fi.IsDir():
				subdirs++
			default:
				skipped = append(skipped, fmt.Sprintf("%s: %s (only regular files are stored)", p, zstor.FileKind(fi.Mode())))
			}
		}
		if subdirs > 0 {
			skipped = append(skipped, fmt.Sprintf("%d directories inside %s (store -r stores the whole tree)", subdirs, path))
		}
		return files, skipped, errs, nil
	}
	// WalkDir does not enter a root that is a symbolic link; a trailing
	// separator makes it follow the link (links below are not followed).
	root := path
	if li, err := os.Lstat(path); err == nil && li.Mode()&fs.ModeSymlink != 0 {
		root = path + string(filepath.Separator)
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, fmt.Errorf("zstor store: %w", err))
			if d != nil && d.IsDir() && p != root {
				return fs.SkipDir
			}
			return nil
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(path, p)
		if w.excluded(d.Name(), rel) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch t := d.Type(); {
		case t.IsDir():
		case t.IsRegular():
			files = append(files, toStore{path: p, rel: rel})
		case t&fs.ModeSymlink != 0:
			files = append(files, toStore{path: p, rel: rel, link: true})
		default:
			skipped = append(skipped, fmt.Sprintf("%s: %s (only regular files and symbolic links are stored)", p, zstor.FileKind(t)))
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("zstor store: %w", err)
	}
	return files, skipped, errs, nil
}

// storeFile stores one file and reports it, with a progress bar on a
// terminal (through the daemon too: it sends progress lines).
func (a *app) storeFile(ctx context.Context, o ops, path string, opts zstor.StoreOptions) error {
	var bar *progressBar
	if a.tty && !opts.Links {
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
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
	if opts.Links {
		a.printf("stored %s as %s (symbolic link%s)", path, res.Key, replaced)
		return nil
	}
	a.printf("stored %s as %s (%d bytes, %d chunks, checksum %s%s)%s",
		path, res.Key, res.Size, res.Chunks, res.Checksum, replaced, deleted)
	if n := a.cfg.ExpectedShards; res.MinShards > 0 && res.MinShards < n {
		a.printf("degraded: %s has %d of %d shards (too few backends reachable); repair (or the daemon) adds the rest when backends return", res.Key, res.MinShards, n)
	}
	return nil
}

func (a *app) retrieveCommand() *cobra.Command {
	var (
		file, output string
		force        bool
	)
	cmd := &cobra.Command{
		Use:   "retrieve -f PATH [-o OUTPUT] [--force]",
		Short: "rebuild a stored file, or every file stored under a directory, verified before it appears",
		Long: "Rebuild the file stored from PATH, or when PATH is a directory (no object of its own),\n" +
			"every object stored under it. The file is written at its path, or with -o at OUTPUT\n" +
			"(for a directory: the tree goes below OUTPUT; for a file, OUTPUT may be an existing\n" +
			"directory to write into). Each file is verified before it appears and gets its stored\n" +
			"mode and modification time; symbolic links come back as links. A local file that\n" +
			"already holds the stored content is left as is; one that differs (it changed since it\n" +
			"was stored) is not replaced without --force.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withOps(cmd.Context(), func(o ops, _ remoteOps) error {
				return a.retrieveTree(cmd.Context(), o, file, output, force)
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "path of the file or directory to retrieve (the path it was stored from)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write here instead of at the stored path")
	cmd.Flags().BoolVar(&force, "force", false, "replace local files that differ from the stored version")
	cmd.MarkFlagRequired("file")
	return cmd
}

// retrieveTree retrieves the object of path, or, when there is none, every
// object under it (path as a directory), to output (default: in place).
func (a *app) retrieveTree(ctx context.Context, o ops, path, output string, force bool) error {
	key, err := o.KeyFor(path)
	if err != nil {
		return err
	}
	opts := zstor.RetrieveOptions{Key: key, Protect: !force}
	single := func() error {
		dest := path
		if output != "" {
			dest = output
			if fi, err := os.Stat(output); err == nil && fi.IsDir() {
				dest = filepath.Join(output, filepath.Base(path))
			}
		}
		return a.retrieve(ctx, o, dest, opts)
	}
	if key != "" {
		_, err := o.Check(ctx, key)
		if err == nil {
			return single()
		}
		if !errors.Is(err, zstor.ErrNotStored) {
			return err
		}
	}
	prefix := key
	if prefix != "" {
		prefix += "/"
	}
	entries, _, err := o.List(ctx, prefix)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		// Neither an object nor a directory of them: the single
		// retrieve's error says why (not stored, or a wrong key).
		return single()
	}
	base := path
	if output != "" {
		base = output
	}
	failed := 0
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("zstor retrieve: interrupted (%v)", err)
		}
		rel := strings.TrimPrefix(e.Key, prefix)
		if !filepath.IsLocal(rel) {
			fmt.Fprintf(a.stderr, "zstor retrieve: skipped %q: not a path below %s\n", e.Key, path)
			failed++
			continue
		}
		if err := noLinkBetween(base, rel); err != nil {
			fmt.Fprintf(a.stderr, "zstor retrieve %s: %v\n", e.Key, err)
			failed++
			continue
		}
		eo := opts
		eo.Key = e.Key
		if err := a.retrieve(ctx, o, filepath.Join(base, rel), eo); err != nil {
			fmt.Fprintln(a.stderr, oneLine(err))
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("zstor retrieve: %d of the %d objects under %s could not be retrieved", failed, len(entries), path)
	}
	return nil
}

// noLinkBetween fails when a directory on the way from base to base/rel
// is a symbolic link: a tree retrieve writes below base only, never
// through a link (one retrieved earlier, or one already there) to
// somewhere else.
func noLinkBetween(base, rel string) error {
	p := base
	parts := strings.Split(rel, string(filepath.Separator))
	for _, c := range parts[:len(parts)-1] {
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("not retrieved: %s is a symbolic link, and a retrieve does not write through one", p)
		}
	}
	return nil
}

// retrieve rebuilds one object into the file at dest, with a progress bar
// on a terminal. The client writes a temporary file and renames it only
// once the whole-file checksum verified, so a failure leaves nothing
// behind.
func (a *app) retrieve(ctx context.Context, o ops, dest string, opts zstor.RetrieveOptions) error {
	var bar *progressBar
	if a.tty {
		opts.Started = func(size int64) {
			bar = a.newBar("retrieve "+filepath.Base(dest), size)
		}
		opts.Progress = func(n int) {
			if bar != nil {
				bar.add(n)
			}
		}
	}
	res, err := o.Retrieve(ctx, dest, opts)
	bar.finish(err == nil)
	if err != nil {
		return err
	}
	switch {
	case res.Unchanged:
		a.printf("unchanged %s: already holds %s (checksum %s)", dest, res.Key, res.Checksum)
	case res.Link != "":
		a.printf("retrieved %s from %s (symbolic link to %s)", dest, res.Key, res.Link)
	default:
		a.printf("retrieved %s from %s (%d bytes, checksum %s verified)", dest, res.Key, res.Size, res.Checksum)
	}
	if res.BadShards > 0 {
		a.notice("%d shards of %s were missing or corrupt; run 'zstor rebuild -k %s' to restore full redundancy",
			res.BadShards, res.Key, res.Key)
	}
	return nil
}
