package qsfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"qss/zdb"
	"qss/zstor"
)

// RestoreProgress is called as restore advances: done of total objects.
type RestoreProgress func(done, total int)

// RestoreResult says what a restore brought back.
type RestoreResult struct {
	Generation uint64
	Cut        time.Time
	Objects    int   // objects fetched (descriptors and index files)
	Bytes      int64 // their bytes
	DataFiles  int   // data files left on the backends, fetched on demand
}

// Restore brings the filesystem of the backends' last recovery point back
// into the empty local directory opts.Dir: descriptors and index files are
// fetched, data files stay remote (fetched on demand once mounted). The
// state database is written last, so an interrupted restore is not taken
// for a filesystem: Open refuses it, and Restore may be run again.
func Restore(ctx context.Context, opts Options, progress RestoreProgress) (*RestoreResult, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	n := &Node{opts: opts}
	n.setDirs(opts.Dir)
	if _, err := os.Stat(statePath(opts.Dir)); err == nil {
		return nil, fmt.Errorf("qsfs restore: %s already holds a filesystem (state/qsfs.db): restore into an empty directory", opts.Dir)
	}
	if ents, err := os.ReadDir(opts.Dir); err == nil {
		for _, e := range ents {
			if e.Name() != "data" && e.Name() != "index" && e.Name() != "state" {
				return nil, fmt.Errorf("qsfs restore: %s is not empty (%s): restore into an empty directory", opts.Dir, e.Name())
			}
		}
	}
	// What a previous, interrupted restore left goes.
	for _, d := range []string{n.dirs.data, n.dirs.index, n.dirs.state} {
		if err := os.RemoveAll(d); err != nil {
			return nil, fmt.Errorf("qsfs restore: %w", err)
		}
	}
	for _, d := range []string{n.dirs.data, n.dirs.index, n.dirs.snap} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("qsfs restore: %w", err)
		}
	}
	mpath := filepath.Join(n.dirs.state, "manifest.restore")
	if err := opts.Remote.Get(ctx, manifestName, mpath); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("qsfs restore: the backends hold no qsfs filesystem (no manifest): %w", err)
		}
		return nil, fmt.Errorf("qsfs restore: fetch the manifest: %w", err)
	}
	raw, err := os.ReadFile(mpath)
	if err != nil {
		return nil, fmt.Errorf("qsfs restore: %w", err)
	}
	os.Remove(mpath)
	m := new(Manifest)
	if err := json.Unmarshal(raw, m); err != nil {
		return nil, fmt.Errorf("qsfs restore: the manifest is not valid JSON: %w", err)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("qsfs restore: %w", err)
	}
	type fetch struct{ name, path string }
	var todo []fetch
	res := &RestoreResult{Generation: m.Generation, Cut: m.Cut}
	for ns, p := range m.Namespaces {
		if err := zdb.ValidName(ns); err != nil {
			return nil, fmt.Errorf("qsfs restore: the manifest names namespace %q: %w", ns, err)
		}
		idir := filepath.Join(n.dirs.index, ns)
		if err := os.MkdirAll(idir, 0o700); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Join(n.dirs.data, ns), 0o700); err != nil {
			return nil, err
		}
		todo = append(todo, fetch{p.Descriptor, filepath.Join(idir, zdb.NamespaceFileName)})
		for id, name := range p.Indexes {
			todo = append(todo, fetch{name, filepath.Join(idir, "i"+strconv.FormatUint(uint64(id), 10))})
		}
		res.DataFiles += len(p.Data)
	}
	var done int
	var mu sync.Mutex
	sums := map[string]storedObject{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, f := range todo {
		g.Go(func() error {
			if err := opts.Remote.Get(gctx, f.name, f.path); err != nil {
				return fmt.Errorf("qsfs restore: fetch %s: %w", f.name, err)
			}
			fi, err := os.Stat(f.path)
			sum, serr := zstor.LocalChecksum(f.path)
			if serr != nil {
				return fmt.Errorf("qsfs restore: %s: %w", f.path, serr)
			}
			mu.Lock()
			defer mu.Unlock()
			sums[f.name] = storedObject{Size: fi.Size(), Checksum: sum.String(), At: time.Now()}
			done++
			if err == nil {
				res.Bytes += fi.Size()
			}
			if progress != nil {
				progress(done, len(todo))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	res.Objects = len(todo)
	// Each namespace starts on fresh, empty files of its active id: the
	// files of the point stay closed (and remote) as they were stored.
	now := uint64(time.Now().Unix())
	for ns, p := range m.Namespaces {
		dh := zdb.DataHeader{Version: zdb.DataVersion, Created: now, Opened: now, FileID: p.Active}
		ih := zdb.IndexHeader{Version: zdb.IndexVersion, Created: now, Opened: now, FileID: p.Active, Mode: zdb.Mode(p.Mode)}
		if err := writeSynced(filepath.Join(n.dirs.data, ns, "d"+strconv.FormatUint(uint64(p.Active), 10)), dh.Marshal()); err != nil {
			return nil, err
		}
		if err := writeSynced(filepath.Join(n.dirs.index, ns, "i"+strconv.FormatUint(uint64(p.Active), 10)), ih.Marshal()); err != nil {
			return nil, err
		}
	}
	st, err := openState(statePath(opts.Dir))
	if err != nil {
		return nil, err
	}
	defer st.close()
	if err := st.restored(m, sums); err != nil {
		os.Remove(statePath(opts.Dir))
		return nil, fmt.Errorf("qsfs restore: write the state: %w", err)
	}
	return res, nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
