package zdbfs

// Record formats: see docs/zdbfs-format.md ("zdbfs format v2"). Every
// record starts with a version byte so that a later format can read the
// earlier ones: v2 changed the inode record only (page records and the
// stored-bytes count), every other record is still written as v1.

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// FormatVersion is the version of the superblock written by this
// package; a mount accepts v1 and v2 namespaces and marks a v1 one v2.
const FormatVersion = 2

// Record versions: inode records are written as v2 (v1 is read), every
// other record as v1.
const (
	recordV1 = 1
	inodeV2  = 2
)

// Sizes fixed by format v1.
const (
	BlockSize     = 64 << 10 // data block size
	PageSize      = 4 << 10  // page records (v2) replace this much of a block
	blockPages    = BlockSize / PageSize
	InlineMax     = 4 << 10  // files up to this size keep their data in the inode record
	RootIno       = 1        // inode id of the root directory
	pageMaxEntry  = 256      // directory entries per listing page
	pageMaxBytes  = 16 << 10 // bytes per listing page
	directNameMax = 246      // longer names are keyed by hash (keys are ≤ 255 bytes)
	xattrMaxTotal = 1 << 20  // all xattrs of one inode
	allocChunk    = 1024     // inode ids reserved per allocator write
)

// Fixed keys of the metadata namespace.
var (
	keySuper   = []byte("zdbfs:super")
	keyLease   = []byte("zdbfs:lease")
	keyAlloc   = []byte("zdbfs:alloc")
	keyOrphans = []byte("zdbfs:orphans")
)

var errCorrupt = errors.New("corrupt zdbfs record")

func inoKey(prefix byte, ino uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:], ino)
	return k
}

// inodeKey is "i" + ino.
func inodeKey(ino uint64) []byte { return inoKey('i', ino) }

// xattrKey is "x" + ino.
func xattrKey(ino uint64) []byte { return inoKey('x', ino) }

// direntKey is "e" + dir ino + name, or for names longer than
// directNameMax, "e" + dir ino + 0x00 + sha256(name)[:16] (a name never
// holds a NUL byte, so both forms never collide).
func direntKey(dir uint64, name string) []byte {
	k := inoKey('e', dir)
	if len(name) <= directNameMax {
		return append(k, name...)
	}
	h := sha256.Sum256([]byte(name))
	k = append(k, 0)
	return append(k, h[:16]...)
}

// pageKey is "p" + dir ino + page number.
func pageKey(dir uint64, page uint32) []byte {
	k := inoKey('p', dir)
	return binary.BigEndian.AppendUint32(k, page)
}

// blockKey is "b" + ino + block number (data namespace).
func blockKey(ino, blk uint64) []byte {
	k := inoKey('b', ino)
	return binary.BigEndian.AppendUint64(k, blk)
}

// pageMaskKey is "m" + ino + block number (data namespace, v2): which
// page records of the block to read (u16, bit p for page p).
func pageMaskKey(ino, blk uint64) []byte {
	k := inoKey('m', ino)
	return binary.BigEndian.AppendUint64(k, blk)
}

// pageRecKey is "c" + ino + block number + page number (data namespace,
// v2): a page of the block, stored apart from it, which replaces the
// block's bytes of that page.
func pageRecKey(ino, blk uint64, page int) []byte {
	k := inoKey('c', ino)
	k = binary.BigEndian.AppendUint64(k, blk)
	return append(k, byte(page))
}

// dec is a bounds-checked little-endian reader.
type dec struct {
	b   []byte
	err error
}

func (d *dec) take(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.err = errCorrupt
		return make([]byte, n)
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}
func (d *dec) u8() uint8   { return d.take(1)[0] }
func (d *dec) u32() uint32 { return binary.LittleEndian.Uint32(d.take(4)) }
func (d *dec) u64() uint64 { return binary.LittleEndian.Uint64(d.take(8)) }
func (d *dec) i64() int64  { return int64(d.u64()) }
func (d *dec) bytes32() []byte {
	n := d.u32()
	if int(n) > len(d.b) {
		d.err = errCorrupt
		return nil
	}
	return append([]byte(nil), d.take(int(n))...)
}

func le32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
func le64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

// attrs is the persistent part of an inode.
type attrs struct {
	Mode                uint32 // st_mode, type bits included
	UID, GID            uint32
	Nlink               uint32
	Size                uint64
	Atime, Mtime, Ctime int64 // unix nanoseconds
	Rdev                uint32
	HWM                 uint64 // block keys may exist below this block number only
	Entries             uint64 // directories: number of entries
	Pages               uint32 // directories: listing pages ever used (next page number)
	Inline              bool   // Data holds the whole file content
	Paged               bool   // v2: page records may exist (below HWM)
	Data                []byte // symlink target or inline file data
	Alloc               uint64 // v2: bytes stored in the data namespace (blocks and pages)
}

const (
	flagInline = 1
	flagPaged  = 2
)

func encodeInode(a *attrs) []byte {
	b := make([]byte, 0, 88+len(a.Data))
	b = append(b, inodeV2)
	b = le32(b, a.Mode)
	b = le32(b, a.UID)
	b = le32(b, a.GID)
	b = le32(b, a.Nlink)
	b = le64(b, a.Size)
	b = le64(b, uint64(a.Atime))
	b = le64(b, uint64(a.Mtime))
	b = le64(b, uint64(a.Ctime))
	b = le32(b, a.Rdev)
	b = le64(b, a.HWM)
	b = le64(b, a.Entries)
	b = le32(b, a.Pages)
	var fl uint8
	if a.Inline {
		fl |= flagInline
	}
	if a.Paged {
		fl |= flagPaged
	}
	b = append(b, fl)
	b = le32(b, uint32(len(a.Data)))
	b = append(b, a.Data...)
	return le64(b, a.Alloc)
}

func decodeInode(v []byte) (*attrs, error) {
	d := &dec{b: v}
	ver := d.u8()
	if ver != recordV1 && ver != inodeV2 {
		return nil, fmt.Errorf("inode record version %d: %w", ver, errCorrupt)
	}
	a := &attrs{}
	a.Mode, a.UID, a.GID, a.Nlink = d.u32(), d.u32(), d.u32(), d.u32()
	a.Size = d.u64()
	a.Atime, a.Mtime, a.Ctime = d.i64(), d.i64(), d.i64()
	a.Rdev = d.u32()
	a.HWM = d.u64()
	a.Entries = d.u64()
	a.Pages = d.u32()
	fl := d.u8()
	a.Inline = fl&flagInline != 0
	a.Data = d.bytes32()
	if ver == inodeV2 {
		a.Paged = fl&flagPaged != 0
		a.Alloc = d.u64()
	} else {
		// v1 kept no count: the stored bytes are at most the size.
		a.Alloc = a.Size
		if a.Inline || a.Mode&0o170000 != 0o100000 {
			a.Alloc = 0
		}
	}
	return a, d.err
}

// dirent is a directory entry: the value of a direntKey.
type dirent struct {
	Ino  uint64
	Type uint32 // S_IFMT bits of the child
	Page uint32 // listing page that lists this entry
	Name string
}

func encodeDirent(e *dirent) []byte {
	b := []byte{recordV1}
	b = le64(b, e.Ino)
	b = le32(b, e.Type)
	b = le32(b, e.Page)
	return append(b, e.Name...)
}

func decodeDirent(v []byte) (*dirent, error) {
	d := &dec{b: v}
	if d.u8() != recordV1 {
		return nil, errCorrupt
	}
	e := &dirent{Ino: d.u64(), Type: d.u32(), Page: d.u32()}
	e.Name = string(d.b)
	return e, d.err
}

// pageEntry is one name listed in a page.
type pageEntry struct {
	Name string
	Ino  uint64
	Type uint32
}

func encodePage(es []pageEntry) []byte {
	b := []byte{recordV1}
	for _, e := range es {
		b = append(b, byte(len(e.Name)))
		b = append(b, e.Name...)
		b = le64(b, e.Ino)
		b = le32(b, e.Type)
	}
	return b
}

func decodePage(v []byte) ([]pageEntry, error) {
	d := &dec{b: v}
	if d.u8() != recordV1 {
		return nil, errCorrupt
	}
	var es []pageEntry
	for len(d.b) > 0 && d.err == nil {
		n := int(d.u8())
		name := string(d.take(n))
		es = append(es, pageEntry{Name: name, Ino: d.u64(), Type: d.u32()})
	}
	return es, d.err
}

func pageBytes(es []pageEntry) int {
	n := 1
	for _, e := range es {
		n += 13 + len(e.Name)
	}
	return n
}

// xattrs of one inode, in one record.
type xattrList []xattrPair

type xattrPair struct {
	Name  string
	Value []byte
}

func encodeXattrs(xs xattrList) []byte {
	b := []byte{recordV1}
	for _, x := range xs {
		b = append(b, byte(len(x.Name)))
		b = append(b, x.Name...)
		b = le32(b, uint32(len(x.Value)))
		b = append(b, x.Value...)
	}
	return b
}

func decodeXattrs(v []byte) (xattrList, error) {
	d := &dec{b: v}
	if d.u8() != recordV1 {
		return nil, errCorrupt
	}
	var xs xattrList
	for len(d.b) > 0 && d.err == nil {
		n := int(d.u8())
		name := string(d.take(n))
		xs = append(xs, xattrPair{Name: name, Value: d.bytes32()})
	}
	return xs, d.err
}

// super is the superblock: it marks the namespace as a zdbfs of a format
// version and block size.
type super struct {
	Version   uint8
	BlockSize uint32
	Created   int64
}

func encodeSuper(s *super) []byte {
	b := append([]byte("ZDBFS"), s.Version)
	b = le32(b, s.BlockSize)
	return le64(b, uint64(s.Created))
}

func decodeSuper(v []byte) (*super, error) {
	if len(v) < 6 || string(v[:5]) != "ZDBFS" {
		return nil, fmt.Errorf("not a zdbfs superblock: %w", errCorrupt)
	}
	d := &dec{b: v[5:]}
	s := &super{Version: d.u8(), BlockSize: d.u32(), Created: d.i64()}
	return s, d.err
}

// lease records the mount that owns the namespaces.
type lease struct {
	Token   [16]byte
	PID     uint32
	Renewed int64 // unix ns
	Host    string
}

func encodeLease(l *lease) []byte {
	b := []byte{recordV1}
	b = append(b, l.Token[:]...)
	b = le32(b, l.PID)
	b = le64(b, uint64(l.Renewed))
	return append(b, l.Host...)
}

func decodeLease(v []byte) (*lease, error) {
	d := &dec{b: v}
	if d.u8() != recordV1 {
		return nil, errCorrupt
	}
	l := &lease{}
	copy(l.Token[:], d.take(16))
	l.PID = d.u32()
	l.Renewed = d.i64()
	l.Host = string(d.b)
	return l, d.err
}

func encodeU64s(vs []uint64) []byte {
	b := []byte{recordV1}
	for _, v := range vs {
		b = le64(b, v)
	}
	return b
}

func decodeU64s(v []byte) ([]uint64, error) {
	d := &dec{b: v}
	if d.u8() != recordV1 || len(d.b)%8 != 0 {
		return nil, errCorrupt
	}
	var out []uint64
	for len(d.b) > 0 {
		out = append(out, d.u64())
	}
	return out, nil
}
