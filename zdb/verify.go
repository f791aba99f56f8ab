package zdb

// The read path's check of a data entry against the index entry that
// points at it (docs/zdb-format.md, "Reads"), and the index entry DEL
// appends for its tombstone.

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// errMismatch means the data entry at a location is not the one its index
// entry describes: another key's, a tombstone, another length or CRC, or
// nothing at all (past the end of the file). The index entry or the data
// entry is damaged; the read fails.
var errMismatch = errors.New("data entry does not match its index entry")

// headPool holds buffers for the header and key of a data entry (preadv
// makes a stack buffer escape).
var headPool = sync.Pool{New: func() any { return new([DataEntryFixed + MaxKeyLen]byte) }}

// readPayload reads the data entry at loc in one pread — header, key and
// payload — and appends the payload to dst once it has checked that the
// entry is the one the index describes: key bytes, key length, payload
// length and CRC as recorded, not a tombstone, and a payload that matches
// its CRC. key is the key the entry must hold (the 8-byte id in seq mode).
// The caller holds mu.
func (ns *Namespace) readPayload(loc location, key []byte, dst []byte) ([]byte, error) {
	start := len(dst)
	hl := DataEntryFixed + len(key)
	if loc.Length > MaxPayload || len(key) > MaxKeyLen {
		return nil, ns.readFault(loc, key, "length over the limit")
	}
	if buf := ns.pendingData(loc.DataID, int64(loc.DataOffset)); buf != nil {
		if len(buf) < hl+int(loc.Length) {
			return nil, ns.readFault(loc, key, "entry past the end of the data written")
		}
		if why := entryMismatch(buf[:hl], key, loc); why != "" {
			return nil, ns.readFault(loc, key, why)
		}
		dst = append(dst, buf[hl:hl+int(loc.Length)]...)
		if CRC(dst[start:]) != loc.CRC {
			return nil, errChecksum
		}
		return dst, nil
	}
	f, h, err := ns.dataFile(loc.DataID)
	if err != nil {
		return nil, err
	}
	defer h.release()
	hb := headPool.Get().(*[DataEntryFixed + MaxKeyLen]byte)
	defer headPool.Put(hb)
	head := hb[:hl]
	dst = grow(dst, int(loc.Length))
	n, err := preadEntry(f, head, dst[start:], int64(loc.DataOffset))
	if n < hl+int(loc.Length) {
		if err == nil || errors.Is(err, io.EOF) {
			return nil, ns.readFault(loc, key, "entry past the end of the data file")
		}
		ns.dataIOError(false)
		return nil, err
	}
	ns.eng.stats.dataRead.Add(uint64(loc.Length))
	if why := entryMismatch(head, key, loc); why != "" {
		return nil, ns.readFault(loc, key, why)
	}
	if CRC(dst[start:]) != loc.CRC {
		ns.dataFaults.Add(1)
		return nil, errChecksum
	}
	return dst[:start+int(loc.Length)], nil
}

// entryMismatch compares the header and key of a data entry with what the
// index says; it returns what differs, or "".
func entryMismatch(head, key []byte, loc location) string {
	h, err := ParseDataEntryHeader(head)
	switch {
	case err != nil:
		return err.Error()
	case int(h.KeyLen) != len(key):
		return fmt.Sprintf("key of %d bytes, index says %d", h.KeyLen, len(key))
	case !bytes.Equal(head[DataEntryFixed:], key):
		return "another key"
	case h.Length != loc.Length:
		return fmt.Sprintf("length %d, index says %d", h.Length, loc.Length)
	case h.CRC != loc.CRC:
		return fmt.Sprintf("CRC %08x, index says %08x", h.CRC, loc.CRC)
	case h.Flags&FlagDeleted != 0:
		return "a tombstone"
	}
	return ""
}

// readFault counts a data entry that does not match its index entry and
// logs it (at most once a second per namespace).
func (ns *Namespace) readFault(loc location, key []byte, why string) error {
	ns.dataFaults.Add(1)
	now := time.Now().Unix()
	if last := ns.rec.lastWarn.Load(); now != last && ns.rec.lastWarn.CompareAndSwap(last, now) {
		ns.log().Warn("read refused: the data entry does not match its index entry",
			"key", hex.EncodeToString(key), "file", ns.dataPath(loc.DataID), "offset", loc.DataOffset, "reason", why)
	}
	return errMismatch
}

// appendTombstoneEntry appends, in user mode, an index entry for the
// tombstone a DEL of the key whose live version is at old has just
// appended at dataOff: flagged deleted, length 0, CRC 0, parent old. The
// in-place flag on old is then not the only record of the deletion: a
// damaged flag cannot bring the key back at the next load. 0-db replays a
// flagged entry as a set then a delete of its key, so it reaches the same
// state. Not in seq mode, where every index entry takes an id.
func (ns *Namespace) appendTombstoneEntry(key []byte, dataOff, ts uint32, old location) {
	if ns.mode != ModeUser {
		return
	}
	e := IndexEntry{DataOffset: dataOff, Flags: FlagDeleted, DataID: ns.cur, Timestamp: ts,
		ParentID: old.IndexID, ParentOffset: old.IndexOffset, Key: key}
	ns.appendIndex(&e)
}
