package daemon

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"qss/zstor"
)

// The cache cap. A zdb (typically under zdbfs) keeps its data files in
// zdb_data_dir_path; its hooks store every finished data file with zstor,
// and the daemon keeps the directory under max_zdb_data_dir_size by
// deleting local files that zstor can give back. A file is evicted only
// when all of these hold:
//
//   - it is a regular file not modified for CacheMinAge (a file being
//     written is never evicted);
//   - its key (KeyFor) has a stored object, and the object's checksum
//     equals the local file's checksum — 0-stor_v2 only checks that
//     metadata exists, and so evicts files whose stored copy is stale;
//   - every chunk of that object has at least k shards on backends that
//     answered the health check made for this round (the stored copy can
//     be read back now: otherwise the local file is the only readable one);
//   - its size, mtime and inode did not change while it was hashed.
//
// Files go least recently used first: by the later of atime and mtime.
// What remains racy: a writer that opens and changes the file between the
// last stat and the unlink. zdb never rewrites a closed data file, which is
// why the cap is meant for its data directory.

type cacheFile struct {
	path    string
	info    fs.FileInfo
	lastUse time.Time
}

// checkCache enforces the cap once.
func (d *daemon) checkCache(g *generation) {
	dir, limitMiB := g.cfg.ZdbDataDirPath, g.cfg.MaxZdbDataDirSize
	st := &d.state
	if dir == "" || limitMiB <= 0 {
		st.mu.Lock()
		st.cacheKnown = false
		st.mu.Unlock()
		return
	}
	limit := limitMiB << 20
	files, total, err := scanCache(dir)
	if err != nil {
		d.log.Warn("zstor daemon: cache cap: cannot scan", slog.String("dir", dir), slog.String("err", err.Error()))
		return
	}
	note := func() {
		st.mu.Lock()
		st.cacheKnown, st.cacheSize, st.cacheLimit = true, total, limit
		st.mu.Unlock()
	}
	note()
	if total <= limit {
		d.cacheStuck = false
		return
	}
	sort.Slice(files, func(i, j int) bool { return files[i].lastUse.Before(files[j].lastUse) })
	// Which backends answer now: a file is evicted only while its stored
	// copy can be read back.
	reachable := map[string]bool{}
	hctx, cancel := context.WithTimeout(g.ctx, time.Minute)
	for _, h := range g.client.Backends().HealthAll(hctx) {
		if h.Reachable {
			reachable[h.Backend.ID()] = true
		}
	}
	cancel()
	now := time.Now()
	for _, f := range files {
		if total <= limit || g.ctx.Err() != nil {
			break
		}
		if now.Sub(f.info.ModTime()) < d.opts.CacheMinAge {
			continue
		}
		if why := d.evictable(g.ctx, g, f, reachable); why != "" {
			d.log.Debug("zstor daemon: cache cap: kept", slog.String("file", f.path), slog.String("why", why))
			continue
		}
		if err := os.Remove(f.path); err != nil {
			d.log.Warn("zstor daemon: cache cap: remove", slog.String("file", f.path), slog.String("err", err.Error()))
			continue
		}
		total -= f.info.Size()
		d.met.evictions.Inc()
		d.met.evictedBytes.Add(float64(f.info.Size()))
		d.log.Info("zstor daemon: cache cap: evicted", slog.String("file", f.path), slog.Int64("size", f.info.Size()))
	}
	note()
	stuck := total > limit && g.ctx.Err() == nil
	if stuck && !d.cacheStuck {
		d.log.Warn("zstor daemon: cache directory is over its cap and nothing more can be evicted (files not stored, stale, or recently written)",
			slog.String("dir", dir), slog.Int64("size", total), slog.Int64("limit", limit))
	}
	d.cacheStuck = stuck
}

// evictable returns "" when f may be deleted, else why not. reachable
// holds the IDs of the data backends that answered just before.
func (d *daemon) evictable(ctx context.Context, g *generation, f cacheFile, reachable map[string]bool) string {
	key, err := g.client.KeyFor(f.path)
	if err != nil {
		return "no key: " + err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rec, err := g.client.Stat(ctx, key)
	if err != nil {
		return "not stored: " + err.Error()
	}
	stored := rec.Object.Checksum
	for ci, locs := range rec.Locations {
		n := 0
		for _, l := range locs {
			if l.Backend != "" && reachable[l.Backend] {
				n++
			}
		}
		if n < rec.Object.K {
			return fmt.Sprintf("stored copy unreadable now (chunk %d: %d shards on reachable backends, k = %d)", ci, n, rec.Object.K)
		}
	}
	before, err := os.Lstat(f.path)
	if err != nil || !sameVersion(f.info, before) {
		return "changed since the scan"
	}
	local, err := zstor.LocalChecksum(f.path)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	after, err := os.Lstat(f.path)
	if err != nil || !sameVersion(before, after) {
		return "changed while hashing"
	}
	if local != stored {
		return "stored copy is stale (checksums differ)"
	}
	return ""
}

// sameVersion reports whether two stats are of the same, unchanged file.
func sameVersion(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// scanCache returns the regular files under dir and their total size.
func scanCache(dir string) ([]cacheFile, int64, error) {
	var files []cacheFile
	var total int64
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			return nil // vanished or unreadable below: skip it
		}
		if !de.Type().IsRegular() {
			return nil
		}
		fi, err := de.Info()
		if err != nil {
			return nil
		}
		total += fi.Size()
		last := fi.ModTime()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if at := time.Unix(st.Atim.Sec, st.Atim.Nsec); at.After(last) {
				last = at
			}
		}
		files = append(files, cacheFile{path: p, info: fi, lastUse: last})
		return nil
	})
	return files, total, err
}
