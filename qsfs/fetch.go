package qsfs

import (
	"context"
	"fmt"
	"time"
)

// FetchRange implements zdb.Fetcher: the payload a read needs, read from
// the stored data file without restoring it (only the chunks holding the
// range are fetched; see Remote.ReadAt).
func (n *Node) FetchRange(ctx context.Context, ns string, id uint32, off int64, p []byte) error {
	err := n.opts.Remote.ReadAt(ctx, dataName(ns, id), p, off)
	if err != nil {
		n.stats.FetchErrors.Add(1)
		return err
	}
	n.stats.Fetches.Add(1)
	n.stats.FetchBytes.Add(uint64(len(p)))
	return nil
}

// FetchFile implements zdb.Fetcher: the whole data file, back at path
// (when the Remote cannot read ranges). It counts toward the cache and is
// evicted again like any stored file.
func (n *Node) FetchFile(ctx context.Context, ns string, id uint32, path string) error {
	// The read that needs the file opens it after this returns: until
	// then (and a little longer) the evictor leaves it alone.
	n.pin(dataName(ns, id))
	if err := n.opts.Remote.Get(ctx, dataName(ns, id), path); err != nil {
		n.stats.FetchErrors.Add(1)
		return fmt.Errorf("qsfs: fetch %s: %w", dataName(ns, id), err)
	}
	n.stats.Fetches.Add(1)
	n.kickEvict()
	return nil
}

// pinFor is how long a file fetched back is kept from eviction.
const pinFor = 30 * time.Second

func (n *Node) pin(name string) {
	n.mu.Lock()
	if n.pinned == nil {
		n.pinned = map[string]time.Time{}
	}
	n.pinned[name] = time.Now().Add(pinFor)
	n.mu.Unlock()
}

func (n *Node) isPinned(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, ok := n.pinned[name]
	if ok && time.Now().After(t) {
		delete(n.pinned, name)
		return false
	}
	return ok
}

// Resident tells whether data keys of the data namespace (a file's
// blocks, zdbfs.FS.DataKeys) are on this machine: remote is true when one
// of them is in an evicted data file (reading the file fetches it); known
// is false when none of the keys is stored.
func (n *Node) Resident(keys [][]byte) (remote, known bool) {
	ns := n.eng.Namespace(DataNamespace)
	if ns == nil {
		return false, false
	}
	for _, k := range keys {
		res, ok := ns.Resident(k)
		if !ok {
			continue
		}
		known = true
		if !res {
			return true, true
		}
	}
	return false, known
}
