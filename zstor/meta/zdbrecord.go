package meta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sync"
	"time"
)

// The envelope wraps every value a Store writes, so that replicas can be
// compared, a delete can outlive a backend that missed it, and none of it
// can be forged by a backend ("Metadata envelope" in docs/zstor-format.md).
//
// Envelope v2, written by this code:
//
//	offset size field
//	0      2    magic "QM"
//	2      1    envelope format version = 2
//	3      1    kind: 1 live record, 2 tombstone
//	4      8    version: hybrid logical clock (unix ms << 16 | counter)
//	12     4    writer: random id of the writing Store instance
//	16     ..   Sealer.Seal(plaintext, AD = bytes 0..15 ‖ key)
//
// The plaintext of a live record is u32 value length ‖ value; a tombstone's
// is empty. The seal authenticates the header and the store key with the
// value, so a backend can neither forge a tombstone, nor change a record's
// version or kind, nor move it to another key.
//
// Envelope v1, written by earlier versions and still read:
//
//	0  2 magic "QM"   2 1 format = 1   3 1 kind   4 8 version   12 4 writer
//	16 4 CRC-32C of bytes 0..15 ‖ bytes 20..end
//	20 4 value length L (live only)    24 L value (live only)
//
// A v1 value was sealed by the caller with AD = key; its header is not
// authenticated, so a v1 record ranks below every v2 record of its key, and
// reading a v1 live record rewrites it as v2 (same version and writer).
//
// All integers are little-endian.
const (
	envMagic0, envMagic1 = 'Q', 'M'
	envFormatV1          = 1
	envFormat            = 2
	kindLive             = 1
	kindTombstone        = 2
	envHeaderLen         = 16
	v1TombstoneLen       = 20
	v1LiveHeaderLen      = 24
	liveLenPrefix        = 4
)

// MaxClockAhead is how far ahead of the local wall clock a record's version
// may be. A record further ahead is refused: neither used, nor observed by
// the clock, nor overwritten. Only a writer holding the key can make one
// (its clock is wrong); the bound keeps such a record from pushing this
// store's clock towards the end of its range (2^64−1 would wrap the next
// version to 0) or winning every later write.
const MaxClockAhead = 10 * time.Minute

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errUnknownFormat marks a record written in an envelope format this code
// does not know (a newer zstor): it must be neither used nor overwritten.
var errUnknownFormat = errors.New("unknown metadata envelope format")

// errCorrupt marks a record that fails its structural checks: it is treated
// as absent and rewritten by read repair.
var errCorrupt = errors.New("corrupt metadata envelope")

// errAhead marks an authentic record whose version is more than
// MaxClockAhead ahead of the local clock.
var errAhead = errors.New("metadata record version too far ahead of the local clock")

// stamp orders the writes of a key: any v2 record is newer than any v1
// (legacy) record, then by version, then by writer id, so that two writers
// that happen to pick the same version still agree on a winner.
type stamp struct {
	legacy  bool
	version uint64
	writer  uint32
}

func (a stamp) less(b stamp) bool {
	if a.legacy != b.legacy {
		return a.legacy
	}
	return a.version < b.version || a.version == b.version && a.writer < b.writer
}

// record is a decoded and authenticated envelope.
type record struct {
	stamp
	tombstone bool
	value     []byte // the plaintext value (live records)
	raw       []byte // the envelope as stored, for read repair
}

// envelope encodes, seals and opens envelopes for one Sealer.
type envelope struct {
	sealer Sealer
}

// tombstoneLen is the size of a v2 tombstone.
func (e envelope) tombstoneLen() int64 { return int64(envHeaderLen + e.sealer.Overhead()) }

// isTombstoneSize reports whether a stored value of size bytes has the
// size of a tombstone (v1 or v2); a SCAN reports sizes, not values.
func (e envelope) isTombstoneSize(size int64) bool {
	return size == v1TombstoneLen || size == e.tombstoneLen()
}

// isLiveSize reports whether size can be a live record (v1 or v2).
func (e envelope) isLiveSize(size int64) bool {
	return size >= v1LiveHeaderLen && !e.isTombstoneSize(size)
}

func header(st stamp, tombstone bool) []byte {
	h := make([]byte, envHeaderLen)
	h[0], h[1], h[2] = envMagic0, envMagic1, envFormat
	h[3] = kindLive
	if tombstone {
		h[3] = kindTombstone
	}
	binary.LittleEndian.PutUint64(h[4:12], st.version)
	binary.LittleEndian.PutUint32(h[12:16], st.writer)
	return h
}

func envAD(h []byte, key string) []byte {
	ad := make([]byte, 0, len(h)+len(key))
	return append(append(ad, h...), key...)
}

// encode builds the v2 envelope of a live record or a tombstone of key.
func (e envelope) encode(key string, st stamp, tombstone bool, value []byte) ([]byte, error) {
	h := header(st, tombstone)
	var plain []byte
	if !tombstone {
		plain = make([]byte, liveLenPrefix+len(value))
		binary.LittleEndian.PutUint32(plain, uint32(len(value)))
		copy(plain[liveLenPrefix:], value)
	}
	sealed, err := e.sealer.Seal(plain, envAD(h, key))
	if err != nil {
		return nil, fmt.Errorf("meta: seal record: %w", err)
	}
	return append(h, sealed...), nil
}

// decode parses, authenticates and opens the envelope b stored under key.
// notAfter bounds the version (0: no bound). Errors wrap errCorrupt,
// ErrUnauthentic, errUnknownFormat or errAhead.
func (e envelope) decode(key string, b []byte, notAfter uint64) (record, error) {
	if len(b) < envHeaderLen || b[0] != envMagic0 || b[1] != envMagic1 {
		return record{}, fmt.Errorf("%w: no envelope header (%d bytes)", errCorrupt, len(b))
	}
	var r record
	var err error
	switch b[2] {
	case envFormat:
		r, err = e.decodeV2(key, b)
	case envFormatV1:
		r, err = e.decodeV1(key, b)
	default:
		return record{}, fmt.Errorf("%w %d", errUnknownFormat, b[2])
	}
	if err != nil {
		return record{}, err
	}
	if notAfter != 0 && r.version > notAfter {
		if r.legacy {
			// Not authenticated: no writer vouches for it, so it is
			// junk, overwritten like any corrupt record.
			return record{}, fmt.Errorf("%w: v1 version %#x is past the limit %#x", errCorrupt, r.version, notAfter)
		}
		return record{}, fmt.Errorf("%w: version %#x, the limit is %#x", errAhead, r.version, notAfter)
	}
	return r, nil
}

func (e envelope) decodeV2(key string, b []byte) (record, error) {
	r := record{
		stamp: stamp{version: binary.LittleEndian.Uint64(b[4:12]), writer: binary.LittleEndian.Uint32(b[12:16])},
		raw:   b,
	}
	switch b[3] {
	case kindLive, kindTombstone:
	default:
		return record{}, fmt.Errorf("%w: kind %d", errCorrupt, b[3])
	}
	plain, err := e.sealer.Open(b[envHeaderLen:], envAD(b[:envHeaderLen], key))
	if err != nil {
		return record{}, fmt.Errorf("%w: %v", ErrUnauthentic, err)
	}
	if b[3] == kindTombstone {
		if len(plain) != 0 {
			return record{}, fmt.Errorf("%w: tombstone with %d bytes of content", errCorrupt, len(plain))
		}
		r.tombstone = true
		return r, nil
	}
	if len(plain) < liveLenPrefix || uint64(len(plain)-liveLenPrefix) != uint64(binary.LittleEndian.Uint32(plain)) {
		return record{}, fmt.Errorf("%w: length field does not match a %d-byte value", errCorrupt, len(plain))
	}
	r.value = plain[liveLenPrefix:]
	return r, nil
}

// decodeV1 reads an envelope of the first format: its header is checked
// only by a CRC, which anyone can compute, so the record is marked legacy;
// a live record's value is opened with AD = key, as the caller sealed it.
func (e envelope) decodeV1(key string, b []byte) (record, error) {
	if len(b) < v1TombstoneLen {
		return record{}, fmt.Errorf("%w: v1 envelope of %d bytes", errCorrupt, len(b))
	}
	c := crc32.Update(0, castagnoli, b[:16])
	c = crc32.Update(c, castagnoli, b[20:])
	if want := binary.LittleEndian.Uint32(b[16:20]); c != want {
		return record{}, fmt.Errorf("%w: checksum %08x, want %08x", errCorrupt, c, want)
	}
	r := record{
		stamp: stamp{legacy: true, version: binary.LittleEndian.Uint64(b[4:12]), writer: binary.LittleEndian.Uint32(b[12:16])},
		raw:   b,
	}
	switch b[3] {
	case kindTombstone:
		if len(b) != v1TombstoneLen {
			return record{}, fmt.Errorf("%w: tombstone of %d bytes", errCorrupt, len(b))
		}
		r.tombstone = true
		return r, nil
	case kindLive:
		if len(b) < v1LiveHeaderLen || uint64(len(b)-v1LiveHeaderLen) != uint64(binary.LittleEndian.Uint32(b[20:24])) {
			return record{}, fmt.Errorf("%w: length field does not match a %d-byte record", errCorrupt, len(b))
		}
		plain, err := e.sealer.Open(b[v1LiveHeaderLen:], []byte(key))
		if err != nil {
			return record{}, fmt.Errorf("%w: %v", ErrUnauthentic, err)
		}
		r.value = plain
		return r, nil
	default:
		return record{}, fmt.Errorf("%w: kind %d", errCorrupt, b[3])
	}
}

// upgrade returns a v1 live record rewritten as v2 with the same version and
// writer, so that it replaces the v1 copies and still loses to any later
// write.
func (e envelope) upgrade(key string, r *record) (*record, error) {
	st := r.stamp
	st.legacy = false
	raw, err := e.encode(key, st, false, r.value)
	if err != nil {
		return nil, err
	}
	return &record{stamp: st, value: r.value, raw: raw}, nil
}

// hlc is a hybrid logical clock: versions are the wall clock in
// milliseconds shifted left 16 bits, plus a counter that keeps them strictly
// increasing when several writes share a millisecond or the wall clock steps
// back. observe pulls the clock past versions seen on the backends, so a
// write that follows a read is ordered after what was read even when the
// other writer's clock runs ahead of ours — but never past ceiling(), so no
// record can push the clock towards wrapping.
type hlc struct {
	mu   sync.Mutex
	last uint64
	now  func() time.Time
}

func wallVersion(t time.Time) uint64 {
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	return uint64(ms) << 16
}

func (h *hlc) next() uint64 {
	wall := wallVersion(h.now())
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case wall > h.last:
		h.last = wall
	case h.last < math.MaxUint64:
		h.last++
	}
	return h.last
}

// ceiling is the highest version accepted from a backend: MaxClockAhead
// past the wall clock.
func (h *hlc) ceiling() uint64 {
	return wallVersion(h.now().Add(MaxClockAhead)) | 0xffff
}

func (h *hlc) observe(v uint64) {
	if v > h.ceiling() {
		return
	}
	h.mu.Lock()
	if v > h.last {
		h.last = v
	}
	h.mu.Unlock()
}
