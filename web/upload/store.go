package upload

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"

	"qss/web/fsys"
)

// chunkSize is how much of a PATCH body is read before one write to the
// file: large writes keep a FUSE filesystem's per-call cost small.
const chunkSize = 4 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// record is an upload's "<id>.info".
type record struct {
	ID        string            `json:"id"`
	Size      int64             `json:"size"`
	Owner     string            `json:"owner"`
	Target    string            `json:"target"` // Clean name
	Overwrite bool              `json:"overwrite"`
	MetaData  map[string]string `json:"metadata"`
	Created   time.Time         `json:"created"`
	// Done: the data was renamed to Target; only the record remains,
	// so that a client asking again sees the upload complete.
	Done bool `json:"done,omitempty"`
}

// store is the tusd DataStore over the tree's fsys.UploadsDir.
type store struct {
	fs fsys.FS
}

var (
	_ handler.DataStore           = (*store)(nil)
	_ handler.TerminaterDataStore = (*store)(nil)
)

func dataName(id string) string { return internalName(id + ".bin") }
func infoName(id string) string { return internalName(id + ".info") }

// internalName is the tree name of a file in fsys.UploadsDir. Callers
// pass validID ids, so CleanInternal cannot refuse it.
func internalName(base string) string {
	name, err := fsys.CleanInternal(fsys.UploadsDir + "/" + base)
	if err != nil || fsys.Dir(name) != fsys.UploadsDir {
		panic(fmt.Sprintf("upload: internal name %q: %v", base, err))
	}
	return name
}

// validID: the ids NewUpload makes, 32 lower-case hex digits. Anything
// else a client sends is not found, so it never reaches a file name.
func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func (s *store) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	target, err := Target(info.MetaData)
	if err != nil {
		return nil, tusError(400, err.Error())
	}
	var b [16]byte
	rand.Read(b[:])
	rec := &record{
		ID: hex.EncodeToString(b[:]), Size: info.Size, Owner: userOf(ctx), Target: target,
		Overwrite: info.MetaData["overwrite"] == "1", MetaData: info.MetaData, Created: time.Now().UTC(),
	}
	if err := s.fs.MkdirAll(fsys.UploadsDir, 0o700); err != nil {
		return nil, fmt.Errorf("upload: create %s: %w", fsys.UploadsDir, err)
	}
	f, err := s.fs.OpenFile(dataName(rec.ID), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("upload: create data: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("upload: create data: %w", err)
	}
	if err := s.writeRecord(rec); err != nil {
		s.fs.Remove(dataName(rec.ID))
		return nil, err
	}
	return &upload{s: s, rec: rec}, nil
}

// writeRecord writes rec's file whole and renames it into place, so a
// reader sees the old record or the new one.
func (s *store) writeRecord(rec *record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp := infoName(rec.ID) + ".tmp"
	f, err := s.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("upload: write record: %w", err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.Rename(tmp, infoName(rec.ID))
	}
	if err != nil {
		s.fs.Remove(tmp)
		return fmt.Errorf("upload: write record: %w", err)
	}
	return nil
}

func (s *store) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	if !validID(id) {
		return nil, handler.ErrNotFound
	}
	f, err := s.fs.Open(infoName(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, handler.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("upload: read record: %w", err)
	}
	defer f.Close()
	var rec record
	if err := json.NewDecoder(io.LimitReader(f, 1<<20)).Decode(&rec); err != nil {
		return nil, fmt.Errorf("upload: read record %s: %w", id, err)
	}
	if rec.ID != id || rec.Owner != userOf(ctx) {
		return nil, handler.ErrNotFound
	}
	return &upload{s: s, rec: &rec}, nil
}

func (s *store) AsTerminatableUpload(up handler.Upload) handler.TerminatableUpload {
	return up.(*upload)
}

// expire removes the uploads whose data and record were last written
// before cutoff, and stray temporary records.
func (s *store) expire(ctx context.Context, cutoff time.Time) (int, error) {
	des, err := s.fs.ReadDir(fsys.UploadsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("upload: expire: %w", err)
	}
	type group struct {
		names []string
		last  time.Time
	}
	groups := map[string]*group{}
	for _, de := range des {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		st, err := de.Info()
		if err != nil {
			continue // removed meanwhile
		}
		id, _, _ := strings.Cut(de.Name(), ".")
		g := groups[id]
		if g == nil {
			g = &group{}
			groups[id] = g
		}
		g.names = append(g.names, de.Name())
		if t := st.ModTime(); t.After(g.last) {
			g.last = t
		}
	}
	n := 0
	var errs []error
	for _, g := range groups {
		if !g.last.Before(cutoff) {
			continue
		}
		for _, name := range g.names {
			if err := s.fs.RemoveAll(fsys.Join(fsys.UploadsDir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		n++
	}
	return n, errors.Join(errs...)
}

// upload is one upload, as its record was read.
type upload struct {
	s   *store
	rec *record
}

func (up *upload) GetInfo(ctx context.Context) (handler.FileInfo, error) {
	info := handler.FileInfo{ID: up.rec.ID, Size: up.rec.Size, MetaData: up.rec.MetaData}
	if up.rec.Done {
		info.Offset = up.rec.Size
		return info, nil
	}
	st, err := up.s.fs.Stat(dataName(up.rec.ID))
	if errors.Is(err, fs.ErrNotExist) {
		return info, handler.ErrNotFound
	}
	if err != nil {
		return info, fmt.Errorf("upload: stat data: %w", err)
	}
	info.Offset = st.Size()
	return info, nil
}

// WriteChunk writes src at offset straight into the data file, in
// chunkSize writes. What was read before src failed is written too: a
// cut-off PATCH keeps its bytes and the client resumes after them.
func (up *upload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	f, err := up.s.fs.OpenFile(dataName(up.rec.ID), os.O_WRONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("upload: open data: %w", err)
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var written int64
	for {
		n, rerr := io.ReadFull(src, buf)
		if n > 0 {
			m, werr := f.WriteAt(buf[:n], offset+written)
			written += int64(m)
			if werr != nil {
				f.Close()
				return written, fmt.Errorf("upload: write data: %w", werr)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			f.Close()
			return written, rerr
		}
	}
	if err := f.Close(); err != nil {
		return written, fmt.Errorf("upload: close data: %w", err)
	}
	return written, nil
}

func (up *upload) GetReader(ctx context.Context) (io.ReadCloser, error) {
	if up.rec.Done {
		return nil, handler.ErrNotFound
	}
	return up.s.fs.Open(dataName(up.rec.ID))
}

// FinishUpload renames the data to its target, creating missing folders.
// A target that appeared meanwhile is not replaced without overwrite
// (409; the data stays until the upload expires or is terminated).
func (up *upload) FinishUpload(ctx context.Context) error {
	if up.rec.Done {
		return nil
	}
	if err := checkTarget(up.s.fs, up.rec.Target, up.rec.Overwrite); err != nil {
		return err
	}
	// The data is made durable before it takes its name: once the client
	// is told the upload is complete, a crash does not lose it.
	if err := syncFile(up.s.fs, dataName(up.rec.ID)); err != nil {
		return fmt.Errorf("upload: store the data: %w", err)
	}
	if d := fsys.Dir(up.rec.Target); d != "." {
		if err := up.s.fs.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("upload: create %s: %w", fsys.Display(d), err)
		}
	}
	if err := up.s.fs.Rename(dataName(up.rec.ID), up.rec.Target); err != nil {
		return fmt.Errorf("upload: move into place at %s: %w", fsys.Display(up.rec.Target), err)
	}
	up.rec.Done = true
	return up.s.writeRecord(up.rec)
}

// syncFile fsyncs the FS's file name.
func syncFile(f fsys.FS, name string) error {
	h, err := f.Open(name)
	if err != nil {
		return err
	}
	serr := h.Sync()
	return errors.Join(serr, h.Close())
}

// Terminate removes the upload's data (unless it was already moved into
// place) and its record.
func (up *upload) Terminate(ctx context.Context) error {
	if !up.rec.Done {
		if err := up.s.fs.Remove(dataName(up.rec.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("upload: remove data: %w", err)
		}
	}
	if err := up.s.fs.Remove(infoName(up.rec.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("upload: remove record: %w", err)
	}
	return nil
}
