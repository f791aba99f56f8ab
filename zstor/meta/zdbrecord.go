package meta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"time"
)

// The envelope ("Metadata store on zdb, v1" in docs/zstor-format.md) wraps
// every value the zdb store writes to a backend, so that replicas can be
// compared and a delete can outlive a backend that missed it:
//
//	offset size field
//	0      2    magic "QM"
//	2      1    envelope format version = 1
//	3      1    kind: 1 live record, 2 tombstone
//	4      8    version: hybrid logical clock (unix ms << 16 | counter)
//	12     4    writer: random id of the writing Store instance
//	16     4    CRC-32C of bytes 0..15 followed by bytes 20..end
//	20     4    value length L (live records only)
//	24     L    value (live records only)
//
// All integers are little-endian. A tombstone is exactly 20 bytes and a live
// record at least 24, so a SCAN, which reports sizes but not values, tells
// them apart without reading anything.
const (
	envMagic0, envMagic1 = 'Q', 'M'
	envFormat            = 1
	kindLive             = 1
	kindTombstone        = 2
	tombstoneLen         = 20
	liveHeaderLen        = 24
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errUnknownFormat marks a record written in an envelope format this code
// does not know (a newer zstor): it must be neither used nor overwritten.
var errUnknownFormat = errors.New("unknown metadata envelope format")

// errCorrupt marks a record that fails its checks: it is treated as absent
// and rewritten by read repair.
var errCorrupt = errors.New("corrupt metadata envelope")

// stamp orders the writes of a key: by version, then by writer id, so that
// two writers that happen to pick the same version still agree on a winner.
type stamp struct {
	version uint64
	writer  uint32
}

func (a stamp) less(b stamp) bool {
	return a.version < b.version || a.version == b.version && a.writer < b.writer
}

// record is a decoded envelope.
type record struct {
	stamp
	tombstone bool
	value     []byte // aliases raw
	raw       []byte // the envelope as stored, for read repair
}

// encodeRecord builds the envelope of a live record (value != nil or
// tombstone == false) or of a tombstone.
func encodeRecord(st stamp, tombstone bool, value []byte) []byte {
	var b []byte
	if tombstone {
		b = make([]byte, tombstoneLen)
		b[3] = kindTombstone
	} else {
		b = make([]byte, liveHeaderLen+len(value))
		b[3] = kindLive
		binary.LittleEndian.PutUint32(b[20:24], uint32(len(value)))
		copy(b[liveHeaderLen:], value)
	}
	b[0], b[1], b[2] = envMagic0, envMagic1, envFormat
	binary.LittleEndian.PutUint64(b[4:12], st.version)
	binary.LittleEndian.PutUint32(b[12:16], st.writer)
	binary.LittleEndian.PutUint32(b[16:20], envelopeCRC(b))
	return b
}

func envelopeCRC(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[:16])
	return crc32.Update(c, castagnoli, b[20:])
}

// decodeRecord parses and checks an envelope. The returned record aliases b.
// Errors wrap errCorrupt or errUnknownFormat.
func decodeRecord(b []byte) (record, error) {
	if len(b) < tombstoneLen || b[0] != envMagic0 || b[1] != envMagic1 {
		return record{}, fmt.Errorf("%w: no envelope header (%d bytes)", errCorrupt, len(b))
	}
	if b[2] != envFormat {
		return record{}, fmt.Errorf("%w %d", errUnknownFormat, b[2])
	}
	if got, want := envelopeCRC(b), binary.LittleEndian.Uint32(b[16:20]); got != want {
		return record{}, fmt.Errorf("%w: checksum %08x, want %08x", errCorrupt, got, want)
	}
	r := record{
		stamp: stamp{version: binary.LittleEndian.Uint64(b[4:12]), writer: binary.LittleEndian.Uint32(b[12:16])},
		raw:   b,
	}
	switch b[3] {
	case kindTombstone:
		if len(b) != tombstoneLen {
			return record{}, fmt.Errorf("%w: tombstone of %d bytes", errCorrupt, len(b))
		}
		r.tombstone = true
	case kindLive:
		if len(b) < liveHeaderLen || uint64(len(b)-liveHeaderLen) != uint64(binary.LittleEndian.Uint32(b[20:24])) {
			return record{}, fmt.Errorf("%w: length field does not match a %d-byte record", errCorrupt, len(b))
		}
		r.value = b[liveHeaderLen:]
	default:
		return record{}, fmt.Errorf("%w: kind %d", errCorrupt, b[3])
	}
	return r, nil
}

// hlc is a hybrid logical clock: versions are the wall clock in
// milliseconds shifted left 16 bits, plus a counter that keeps them strictly
// increasing when several writes share a millisecond or the wall clock steps
// back. observe pulls the clock past versions seen on the backends, so a
// write that follows a read is ordered after what was read even when the
// other writer's clock runs ahead of ours.
type hlc struct {
	mu   sync.Mutex
	last uint64
	now  func() time.Time
}

func (h *hlc) next() uint64 {
	wall := uint64(h.now().UnixMilli()) << 16
	h.mu.Lock()
	defer h.mu.Unlock()
	if wall > h.last {
		h.last = wall
	} else {
		h.last++
	}
	return h.last
}

func (h *hlc) observe(v uint64) {
	h.mu.Lock()
	if v > h.last {
		h.last = v
	}
	h.mu.Unlock()
}
