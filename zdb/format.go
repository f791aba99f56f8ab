package zdb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// On-disk format of 0-db v2 (docs/zdb-format.md). Everything is
// little-endian and packed.
const (
	IndexMagic      = "IDX0"
	IndexVersion    = 4
	IndexHeaderSize = 29 // magic, version, created, opened, fileid, mode
	IndexEntryFixed = 34 // an index entry without its key

	DataMagic      = "DAT0"
	DataVersion    = 3
	DataHeaderSize = 28 // magic, version, created, opened, fileid
	DataEntryFixed = 18 // a data entry without its key and payload

	NamespaceFileVersion = 1
	NamespaceFileName    = "zdb-namespace"

	MaxKeyLen      = 255
	MaxPayload     = 8 << 20
	SeqKeyLen      = 8                           // ids are u64 little-endian
	SeqEntrySize   = IndexEntryFixed + SeqKeyLen // 42: every slot of a seq index
	MaxNameLen     = 128
	MaxPasswordLen = 255
)

// Entry flags.
const (
	FlagDeleted   = 1 // index: deleted or superseded; data: tombstone
	FlagTruncated = 2 // data: truncated
)

// Namespace file flags.
const (
	nsFlagPublic = 1
	nsFlagWorm   = 2
	nsFlagAlways = 4 // 0-db always sets this bit
)

// Mode is how a namespace's keys are chosen.
type Mode uint8

const (
	ModeUser Mode = 0 // binary keys chosen by the client
	ModeSeq  Mode = 1 // u64 ids assigned by the server
)

func (m Mode) String() string {
	if m == ModeSeq {
		return "seq"
	}
	return "user"
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC is 0-db's checksum: CRC-32C (Castagnoli) with an initial value of 0 and
// no final XOR, which is not the standard CRC-32C. Go's crc32 inverts on the
// way in and out, so inverting around it yields the raw register.
func CRC(p []byte) uint32 {
	return ^crc32.Update(0xffffffff, castagnoli, p)
}

// IndexHeader opens every index file i<N>.
type IndexHeader struct {
	Version uint32
	Created uint64 // unix seconds
	Opened  uint64
	FileID  uint32
	Mode    Mode
}

// Marshal encodes the header in its 29 bytes.
func (h IndexHeader) Marshal() []byte {
	b := make([]byte, IndexHeaderSize)
	copy(b, IndexMagic)
	binary.LittleEndian.PutUint32(b[4:], h.Version)
	binary.LittleEndian.PutUint64(b[8:], h.Created)
	binary.LittleEndian.PutUint64(b[16:], h.Opened)
	binary.LittleEndian.PutUint32(b[24:], h.FileID)
	b[28] = byte(h.Mode)
	return b
}

// ParseIndexHeader decodes and checks an index file header.
func ParseIndexHeader(b []byte) (IndexHeader, error) {
	if len(b) < IndexHeaderSize {
		return IndexHeader{}, fmt.Errorf("index header: %d bytes, want %d", len(b), IndexHeaderSize)
	}
	if string(b[:4]) != IndexMagic {
		return IndexHeader{}, fmt.Errorf("index header: bad magic %q", b[:4])
	}
	h := IndexHeader{
		Version: binary.LittleEndian.Uint32(b[4:]),
		Created: binary.LittleEndian.Uint64(b[8:]),
		Opened:  binary.LittleEndian.Uint64(b[16:]),
		FileID:  binary.LittleEndian.Uint32(b[24:]),
		Mode:    Mode(b[28]),
	}
	if h.Version != IndexVersion {
		return h, fmt.Errorf("index header: version %d, want %d", h.Version, IndexVersion)
	}
	if h.Mode > ModeSeq {
		return h, fmt.Errorf("index header: unknown mode %d", h.Mode)
	}
	return h, nil
}

// IndexEntry is one record of an index file. Field offsets inside the
// encoded entry are the idxOff* constants.
type IndexEntry struct {
	DataOffset   uint32
	Length       uint32
	Previous     uint32 // offset of the previous entry in the same file (RSCAN)
	Flags        uint8
	DataID       uint32
	Timestamp    uint32
	CRC          uint32
	ParentID     uint32 // index file of the prior version (HISTORY)
	ParentOffset uint32
	Key          []byte
}

const (
	idxOffFlags = 13
	idxOffCRC   = 22
)

// Size is the entry's encoded length.
func (e *IndexEntry) Size() int { return IndexEntryFixed + len(e.Key) }

// Append encodes the entry at the end of b.
func (e *IndexEntry) Append(b []byte) []byte {
	var h [IndexEntryFixed]byte
	h[0] = uint8(len(e.Key))
	binary.LittleEndian.PutUint32(h[1:], e.DataOffset)
	binary.LittleEndian.PutUint32(h[5:], e.Length)
	binary.LittleEndian.PutUint32(h[9:], e.Previous)
	h[13] = e.Flags
	binary.LittleEndian.PutUint32(h[14:], e.DataID)
	binary.LittleEndian.PutUint32(h[18:], e.Timestamp)
	binary.LittleEndian.PutUint32(h[22:], e.CRC)
	binary.LittleEndian.PutUint32(h[26:], e.ParentID)
	binary.LittleEndian.PutUint32(h[30:], e.ParentOffset)
	b = append(b, h[:]...)
	return append(b, e.Key...)
}

// errShort means a buffer ends inside an entry: a torn tail on disk.
var errShort = errors.New("entry cut short")

// ParseIndexEntry decodes the entry at the start of b. The key aliases b.
// It returns errShort when b ends inside the entry.
func ParseIndexEntry(b []byte) (IndexEntry, int, error) {
	if len(b) < IndexEntryFixed {
		return IndexEntry{}, 0, errShort
	}
	kl := int(b[0])
	n := IndexEntryFixed + kl
	if len(b) < n {
		return IndexEntry{}, 0, errShort
	}
	e := IndexEntry{
		DataOffset:   binary.LittleEndian.Uint32(b[1:]),
		Length:       binary.LittleEndian.Uint32(b[5:]),
		Previous:     binary.LittleEndian.Uint32(b[9:]),
		Flags:        b[13],
		DataID:       binary.LittleEndian.Uint32(b[14:]),
		Timestamp:    binary.LittleEndian.Uint32(b[18:]),
		CRC:          binary.LittleEndian.Uint32(b[22:]),
		ParentID:     binary.LittleEndian.Uint32(b[26:]),
		ParentOffset: binary.LittleEndian.Uint32(b[30:]),
		Key:          b[IndexEntryFixed:n:n],
	}
	if kl == 0 {
		return e, n, errors.New("index entry with an empty key")
	}
	if e.Length > MaxPayload {
		return e, n, fmt.Errorf("index entry length %d over the %d limit", e.Length, MaxPayload)
	}
	return e, n, nil
}

// DataHeader opens every data file d<N>.
type DataHeader struct {
	Version uint32
	Created uint64
	Opened  uint64
	FileID  uint32
}

// Marshal encodes the header in its 28 bytes.
func (h DataHeader) Marshal() []byte {
	b := make([]byte, DataHeaderSize)
	copy(b, DataMagic)
	binary.LittleEndian.PutUint32(b[4:], h.Version)
	binary.LittleEndian.PutUint64(b[8:], h.Created)
	binary.LittleEndian.PutUint64(b[16:], h.Opened)
	binary.LittleEndian.PutUint32(b[24:], h.FileID)
	return b
}

// ParseDataHeader decodes and checks a data file header.
func ParseDataHeader(b []byte) (DataHeader, error) {
	if len(b) < DataHeaderSize {
		return DataHeader{}, fmt.Errorf("data header: %d bytes, want %d", len(b), DataHeaderSize)
	}
	if string(b[:4]) != DataMagic {
		return DataHeader{}, fmt.Errorf("data header: bad magic %q", b[:4])
	}
	h := DataHeader{
		Version: binary.LittleEndian.Uint32(b[4:]),
		Created: binary.LittleEndian.Uint64(b[8:]),
		Opened:  binary.LittleEndian.Uint64(b[16:]),
		FileID:  binary.LittleEndian.Uint32(b[24:]),
	}
	if h.Version != DataVersion {
		return h, fmt.Errorf("data header: version %d, want %d", h.Version, DataVersion)
	}
	return h, nil
}

// DataEntryHeader is the fixed part of a data entry; the key and then the
// payload follow it.
type DataEntryHeader struct {
	KeyLen    uint8
	Length    uint32
	Previous  uint32 // offset of the previous entry in the same data file
	CRC       uint32
	Flags     uint8
	Timestamp uint32
}

// Size is the whole entry's length: header, key and payload.
func (h DataEntryHeader) Size() int64 {
	return DataEntryFixed + int64(h.KeyLen) + int64(h.Length)
}

// AppendDataEntry encodes a whole data entry at the end of b.
func AppendDataEntry(b []byte, h DataEntryHeader, key, payload []byte) []byte {
	var f [DataEntryFixed]byte
	f[0] = uint8(len(key))
	binary.LittleEndian.PutUint32(f[1:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(f[5:], h.Previous)
	binary.LittleEndian.PutUint32(f[9:], h.CRC)
	f[13] = h.Flags
	binary.LittleEndian.PutUint32(f[14:], h.Timestamp)
	b = append(b, f[:]...)
	b = append(b, key...)
	return append(b, payload...)
}

// ParseDataEntryHeader decodes the fixed part of a data entry.
func ParseDataEntryHeader(b []byte) (DataEntryHeader, error) {
	if len(b) < DataEntryFixed {
		return DataEntryHeader{}, errShort
	}
	h := DataEntryHeader{
		KeyLen:    b[0],
		Length:    binary.LittleEndian.Uint32(b[1:]),
		Previous:  binary.LittleEndian.Uint32(b[5:]),
		CRC:       binary.LittleEndian.Uint32(b[9:]),
		Flags:     b[13],
		Timestamp: binary.LittleEndian.Uint32(b[14:]),
	}
	if h.Length > MaxPayload {
		return h, fmt.Errorf("data entry length %d over the %d limit", h.Length, MaxPayload)
	}
	return h, nil
}

// NamespaceFile is the content of <index>/<ns>/zdb-namespace.
type NamespaceFile struct {
	Version  uint32
	MaxSize  uint64
	Public   bool
	Worm     bool
	Name     string
	Password string
}

// Marshal encodes the descriptor.
func (d NamespaceFile) Marshal() []byte {
	b := make([]byte, 15, 15+len(d.Name)+len(d.Password))
	binary.LittleEndian.PutUint32(b[0:], NamespaceFileVersion)
	b[4] = uint8(len(d.Name))
	b[5] = uint8(len(d.Password))
	binary.LittleEndian.PutUint64(b[6:], d.MaxSize)
	flags := byte(nsFlagAlways)
	if d.Public {
		flags |= nsFlagPublic
	}
	if d.Worm {
		flags |= nsFlagWorm
	}
	b[14] = flags
	b = append(b, d.Name...)
	return append(b, d.Password...)
}

// ParseNamespaceFile decodes a zdb-namespace descriptor.
func ParseNamespaceFile(b []byte) (NamespaceFile, error) {
	if len(b) < 15 {
		return NamespaceFile{}, fmt.Errorf("namespace descriptor: %d bytes, want at least 15", len(b))
	}
	d := NamespaceFile{Version: binary.LittleEndian.Uint32(b)}
	if d.Version != NamespaceFileVersion {
		return d, fmt.Errorf("namespace descriptor: version %d, want %d", d.Version, NamespaceFileVersion)
	}
	nl, pl := int(b[4]), int(b[5])
	d.MaxSize = binary.LittleEndian.Uint64(b[6:])
	d.Public = b[14]&nsFlagPublic != 0
	d.Worm = b[14]&nsFlagWorm != 0
	if len(b) < 15+nl+pl {
		return d, fmt.Errorf("namespace descriptor: %d bytes, want %d", len(b), 15+nl+pl)
	}
	d.Name = string(b[15 : 15+nl])
	d.Password = string(b[15+nl : 15+nl+pl])
	return d, nil
}
