package files

// The trash lives inside the tree, at fsys.TrashDir, so that deleting is
// a rename (no data is copied, and nothing is erased until the trash is
// emptied). Each deleted item is
//
//	.qsfs-trash/<id>/<basename>   the data, renamed there
//	.qsfs-trash/<id>.json         its record: path, kind, size, deleted, by
//
// Crash story. A delete writes and syncs the record first, then renames
// the data: a crash in between leaves a record without data while the
// data is still at its place. A listing skips such a record (the item was
// never deleted) and leaves it alone: a delete in flight looks the same
// for a moment, so the listing may not remove it; emptying the trash
// removes it. Restore renames the data back first and removes the record
// after: a crash in between is the same record without data. Emptying
// removes the data first and the record last, the same again.
//
// Data without a record cannot come from these steps, only from outside
// (a record removed by hand). It is never hidden: the listing shows it
// with what the data tells (kind, size, the folder's time) and a path at
// the root under its own name, where a restore puts it.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"qss/web/fsys"
)

// TrashItem is one deleted name, as the trash listing returns it.
type TrashItem struct {
	ID      string    `json:"id"`
	Path    string    `json:"path"` // display path it was deleted from
	Kind    string    `json:"kind"`
	Size    int64     `json:"size"` // bytes; a folder's is the sum of its files
	Deleted time.Time `json:"deleted"`
	By      string    `json:"by,omitempty"` // who deleted it, when known
}

// trashRecord is the content of <id>.json.
type trashRecord struct {
	Path    string    `json:"path"`
	Kind    string    `json:"kind"`
	Size    int64     `json:"size"`
	Deleted time.Time `json:"deleted"`
	By      string    `json:"by"`
}

// maxRecord bounds the size of a record file read back.
const maxRecord = 64 << 10

// sizeWalkLimit bounds the entries visited to size a deleted folder.
const sizeWalkLimit = 100000

func trashName(rel string) string {
	name, err := fsys.CleanInternal(fsys.TrashDir + "/" + rel)
	if err != nil {
		panic(err) // rel is an id we made or validated
	}
	return name
}

func newTrashID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// validID reports whether id has the form newTrashID makes.
func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// trash moves the Clean name into the trash, with a.mu held.
func (a *API) trash(ctx context.Context, name, by string) (TrashItem, error) {
	st, err := a.fs.Lstat(name)
	if err != nil {
		return TrashItem{}, err
	}
	id, err := newTrashID()
	if err != nil {
		return TrashItem{}, err
	}
	rec := trashRecord{Path: fsys.Display(name), Kind: kindOf(st.Mode()), Size: st.Size(),
		Deleted: time.Now().UTC().Truncate(time.Millisecond), By: by}
	if st.IsDir() {
		rec.Size = a.treeSize(ctx, name)
	}
	if err := a.fs.MkdirAll(fsys.TrashDir, 0o700); err != nil {
		return TrashItem{}, fmt.Errorf("create the trash: %w", err)
	}
	dir, record := trashName(id), trashName(id+".json")
	if err := a.fs.Mkdir(dir, 0o700); err != nil {
		return TrashItem{}, fmt.Errorf("create a trash entry: %w", err)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return TrashItem{}, err
	}
	if err := a.writeSynced(record, data, 0o600); err != nil {
		a.fs.Remove(record)
		a.fs.Remove(dir)
		return TrashItem{}, fmt.Errorf("write the trash record: %w", err)
	}
	a.syncDir(fsys.TrashDir)
	if err := a.fs.Rename(name, fsys.Join(dir, fsys.Base(name))); err != nil {
		a.fs.Remove(record)
		a.fs.Remove(dir)
		return TrashItem{}, err
	}
	return itemOf(id, rec), nil
}

func itemOf(id string, rec trashRecord) TrashItem {
	return TrashItem{ID: id, Path: rec.Path, Kind: rec.Kind, Size: rec.Size, Deleted: rec.Deleted, By: rec.By}
}

// treeSize is the bytes of the files under the Clean folder name,
// counting at most sizeWalkLimit entries (a lower bound beyond).
func (a *API) treeSize(ctx context.Context, name string) int64 {
	var total int64
	seen := 0
	queue := []string{name}
	for len(queue) > 0 && seen < sizeWalkLimit && ctx.Err() == nil {
		dir := queue[0]
		queue = queue[1:]
		des, err := a.fs.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, de := range des {
			seen++
			if de.IsDir() {
				queue = append(queue, fsys.Join(dir, de.Name()))
			} else if de.Type().IsRegular() {
				if info, err := de.Info(); err == nil {
					total += info.Size()
				}
			}
		}
	}
	return total
}

type pathsBody struct {
	Paths []string `json:"paths"`
}

func (a *API) delete(w http.ResponseWriter, r *http.Request) {
	var b pathsBody
	if err := decodeJSON(w, r, &b); err != nil {
		a.fail(w, r, err)
		return
	}
	if len(b.Paths) == 0 || len(b.Paths) > maxPaths {
		a.fail(w, r, badf("paths: between 1 and %d names", maxPaths))
		return
	}
	// Every name is checked before anything moves: a bad one refuses
	// the whole request and changes nothing.
	seen := map[string]bool{}
	var names []string
	for _, p := range b.Paths {
		name, err := fsys.Clean(p)
		if err != nil {
			a.fail(w, r, fmt.Errorf("paths: %w", err))
			return
		}
		if name == "." {
			a.fail(w, r, badf("paths: the root cannot be deleted"))
			return
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		names = append(names, name)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, name := range names {
		if _, err := a.fs.Lstat(name); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	// Deeper names first, so that "a/b" is trashed before "a" moves.
	sort.SliceStable(names, func(i, j int) bool {
		return strings.Count(names[i], "/") > strings.Count(names[j], "/")
	})
	trashed := make([]TrashItem, 0, len(names))
	by := a.user(r)
	for _, name := range names {
		it, err := a.trash(r.Context(), name, by)
		if err != nil {
			if len(trashed) > 0 {
				err = fmt.Errorf("%w (%d of %d were moved to the trash before this)", err, len(trashed), len(names))
			}
			a.fail(w, r, err)
			return
		}
		trashed = append(trashed, it)
	}
	writeJSON(w, http.StatusOK, struct {
		Trashed []TrashItem `json:"trashed"`
	}{trashed})
}

// trashItems lists the trash (see the crash story above).
func (a *API) trashItems() ([]TrashItem, error) {
	des, err := a.fs.ReadDir(fsys.TrashDir)
	if errors.Is(err, fs.ErrNotExist) {
		return []TrashItem{}, nil
	}
	if err != nil {
		return nil, err
	}
	items := []TrashItem{}
	for _, de := range des {
		id := de.Name()
		if !de.IsDir() || !validID(id) {
			continue // records are read through their folder; others are not ours
		}
		it, ok := a.trashItem(id)
		if ok {
			items = append(items, it)
		}
	}
	sort.Slice(items, func(i, j int) bool {
		if !items[i].Deleted.Equal(items[j].Deleted) {
			return items[i].Deleted.After(items[j].Deleted)
		}
		return items[i].ID < items[j].ID
	})
	return items, nil
}

// trashItem reads one entry: ok is false when it holds no data.
func (a *API) trashItem(id string) (TrashItem, bool) {
	data, name, ok := a.trashData(id)
	if !ok {
		return TrashItem{}, false
	}
	rec, err := a.readRecord(id)
	if err != nil {
		// Data without a record: shown, to be restored at the root.
		dst, _ := a.fs.Lstat(trashName(id))
		rec = trashRecord{Path: "/" + name, Kind: kindOf(data.Mode()), Size: data.Size()}
		if dst != nil {
			rec.Deleted = dst.ModTime().UTC()
		}
	}
	return itemOf(id, rec), true
}

// trashData is the data of entry id: its info and base name.
func (a *API) trashData(id string) (fs.FileInfo, string, bool) {
	des, err := a.fs.ReadDir(trashName(id))
	if err != nil || len(des) == 0 {
		return nil, "", false
	}
	st, err := des[0].Info()
	if err != nil {
		return nil, "", false
	}
	return st, des[0].Name(), true
}

func (a *API) readRecord(id string) (trashRecord, error) {
	var rec trashRecord
	f, err := a.fs.Open(trashName(id + ".json"))
	if err != nil {
		return rec, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecord))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, fmt.Errorf("trash record %s: %w", id, err)
	}
	return rec, nil
}

func (a *API) trashList(w http.ResponseWriter, r *http.Request) {
	items, err := a.trashItems()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Items []TrashItem `json:"items"`
	}{items})
}

type idsBody struct {
	IDs []string `json:"ids"`
}

// bodyIDs decodes and checks the ids of a restore or an empty.
func bodyIDs(w http.ResponseWriter, r *http.Request) ([]string, error) {
	var b idsBody
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &b); err != nil {
			return nil, err
		}
	}
	if len(b.IDs) > maxPaths {
		return nil, badf("ids: at most %d", maxPaths)
	}
	seen := map[string]bool{}
	ids := make([]string, 0, len(b.IDs))
	for _, id := range b.IDs {
		if !validID(id) {
			return nil, badf("ids: %q is not a trash id", id)
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func (a *API) trashRestore(w http.ResponseWriter, r *http.Request) {
	ids, err := bodyIDs(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if len(ids) == 0 {
		a.fail(w, r, badf("ids: name the items to restore"))
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	type restore struct {
		id, data, to string
	}
	var todo []restore
	for _, id := range ids {
		it, ok := a.trashItem(id)
		if !ok {
			a.fail(w, r, fmt.Errorf("trash item %s: %w", id, fs.ErrNotExist))
			return
		}
		to, err := fsys.Clean(it.Path)
		if err != nil || to == "." {
			a.fail(w, r, fmt.Errorf("trash item %s has an unusable path %q: %w", id, it.Path, fsys.ErrBadPath))
			return
		}
		_, base, _ := a.trashData(id)
		todo = append(todo, restore{id, fsys.Join(trashName(id), base), to})
	}
	restored := make([]string, 0, len(todo))
	for _, t := range todo {
		if err := a.fs.MkdirAll(fsys.Dir(t.to), 0o755); err != nil {
			a.fail(w, r, fmt.Errorf("recreate the folder of %s: %w", fsys.Display(t.to), err))
			return
		}
		to, err := a.freeName(t.to)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		if err := a.fs.Rename(t.data, to); err != nil {
			a.fail(w, r, err)
			return
		}
		a.fs.Remove(trashName(t.id))
		a.fs.Remove(trashName(t.id + ".json"))
		restored = append(restored, fsys.Display(to))
	}
	writeJSON(w, http.StatusOK, struct {
		Restored []string `json:"restored"`
	}{restored})
}

// freeName is name if nothing is there, else the first free
// "base (restored N).ext".
func (a *API) freeName(name string) (string, error) {
	if _, err := a.fs.Lstat(name); errors.Is(err, fs.ErrNotExist) {
		return name, nil
	}
	base := fsys.Base(name)
	ext := path.Ext(base)
	if ext == base {
		ext = "" // ".bashrc" has no extension
	}
	stem := strings.TrimSuffix(base, ext)
	for n := 1; n < 10000; n++ {
		cand := fsys.Join(fsys.Dir(name), fmt.Sprintf("%s (restored %d)%s", stem, n, ext))
		if len(fsys.Base(cand)) > fsys.MaxName {
			break
		}
		if _, err := a.fs.Lstat(cand); errors.Is(err, fs.ErrNotExist) {
			return cand, nil
		}
	}
	return "", fmt.Errorf("%s: %w, and no free name to restore it to", fsys.Display(name), fs.ErrExist)
}

func (a *API) trashEmpty(w http.ResponseWriter, r *http.Request) {
	ids, err := bodyIDs(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(ids) == 0 {
		items, err := a.trashItems()
		if err != nil {
			a.fail(w, r, err)
			return
		}
		// Everything, records without data included.
		if err := a.fs.RemoveAll(fsys.TrashDir); err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Purged int `json:"purged"`
		}{len(items)})
		return
	}
	for _, id := range ids {
		if _, ok := a.trashItem(id); !ok {
			a.fail(w, r, fmt.Errorf("trash item %s: %w", id, fs.ErrNotExist))
			return
		}
	}
	purged := 0
	for _, id := range ids {
		if err := a.fs.RemoveAll(trashName(id)); err != nil {
			a.fail(w, r, err)
			return
		}
		if err := a.fs.Remove(trashName(id + ".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.fail(w, r, err)
			return
		}
		purged++
	}
	writeJSON(w, http.StatusOK, struct {
		Purged int `json:"purged"`
	}{purged})
}
