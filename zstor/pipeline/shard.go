package pipeline

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/zeebo/blake3"
)

// Format constants of zstor shard format v1 (docs/zstor-format.md).
const (
	// FormatVersion is the shard format version this package writes and
	// reads.
	FormatVersion = 1

	// HeaderSize is the size of a shard header.
	HeaderSize = 52

	// ShardOverhead is what a shard adds to its erasure-coded payload: the
	// header and the trailing checksum.
	ShardOverhead = HeaderSize + ChecksumSize

	// MaxShardSize is the largest complete shard: zdb's value limit (8 MiB).
	MaxShardSize = 8 << 20

	// MaxShards is the largest N: shard indexes are one byte, and
	// Reed-Solomon over GF(2⁸) is limited to 256 shards.
	MaxShards = 255

	// DefaultChunkSize is the chunk size when none is configured.
	DefaultChunkSize = 4 << 20

	// tagSize is the GCM authentication tag appended to every ciphertext.
	tagSize = 16

	// maxChunkCap bounds the chunk size whatever K allows, so chunk sizes fit
	// the header's 32-bit fields and memory per chunk stays sane.
	maxChunkCap = 1 << 30

	flagFinal = 1 << 0 // header flags: last chunk of the object
)

// shardMagic opens every shard.
var shardMagic = [4]byte{'Z', 'S', 'H', 'D'}

// MaxChunkSize is the largest chunk size usable with k data shards: each
// shard (header, ceil((chunk+16)/k) payload bytes, checksum) must fit in
// MaxShardSize. It is at most 1 GiB.
func MaxChunkSize(k int) int {
	if k < 1 {
		return 0
	}
	return min(k*(MaxShardSize-ShardOverhead)-tagSize, maxChunkCap)
}

// checkShape validates k and n.
func checkShape(k, n int) error {
	switch {
	case k < 1:
		return fmt.Errorf("k (minimal_shards) is %d, must be at least 1", k)
	case n < k:
		return fmt.Errorf("k (minimal_shards) %d is greater than n (expected_shards) %d", k, n)
	case n > MaxShards:
		return fmt.Errorf("n (expected_shards) is %d, at most %d", n, MaxShards)
	}
	return nil
}

// ShardHeader is the decoded header of a shard: enough to tell, from the
// shard alone, which object, chunk and position it belongs to, so the
// metadata of an object can be rebuilt by scanning the data backends.
type ShardHeader struct {
	Version     int
	Final       bool        // the shard belongs to the object's last chunk
	Compression Compression // compression used for the chunk
	K, N        int
	ShardIndex  int // 0..K-1 data, K..N-1 parity
	ObjectID    ObjectID
	ChunkIndex  uint64
	ChunkSize   int // the object's chunk size
	PlainSize   int // plaintext bytes of the chunk
	CipherSize  int // ciphertext bytes of the chunk, GCM tag included
	PayloadSize int // erasure-coded bytes in this shard
}

// putHeader writes the header of shard idx of chunk c into b[:HeaderSize].
func putHeader(b []byte, id ObjectID, c *ChunkMeta, k, n, chunkSize, idx int) {
	copy(b[0:4], shardMagic[:])
	b[4] = FormatVersion
	b[5] = c.flags()
	b[6] = byte(c.Compression)
	b[7] = byte(k)
	b[8] = byte(n)
	b[9] = byte(idx)
	b[10], b[11] = 0, 0
	copy(b[12:28], id[:])
	binary.LittleEndian.PutUint64(b[28:36], c.Index)
	binary.LittleEndian.PutUint32(b[36:40], uint32(chunkSize))
	binary.LittleEndian.PutUint32(b[40:44], uint32(c.PlainSize))
	binary.LittleEndian.PutUint32(b[44:48], uint32(c.CipherSize))
	binary.LittleEndian.PutUint32(b[48:52], uint32(c.PayloadSize))
}

// parseHeader decodes and sanity-checks a shard header. It does not
// authenticate it.
func parseHeader(shard []byte) (ShardHeader, error) {
	var h ShardHeader
	if len(shard) < ShardOverhead {
		return h, fmt.Errorf("%w: %d bytes, shorter than header and checksum (%d)", ErrBadShard, len(shard), ShardOverhead)
	}
	if [4]byte(shard[0:4]) != shardMagic {
		return h, fmt.Errorf("%w: bad magic %q", ErrBadShard, shard[0:4])
	}
	if shard[4] != FormatVersion {
		return h, fmt.Errorf("%w: format version %d, this build reads %d", ErrBadShard, shard[4], FormatVersion)
	}
	if shard[5]&^flagFinal != 0 || shard[10] != 0 || shard[11] != 0 {
		return h, fmt.Errorf("%w: unknown flags or reserved bits set", ErrBadShard)
	}
	h = ShardHeader{
		Version:     int(shard[4]),
		Final:       shard[5]&flagFinal != 0,
		Compression: Compression(shard[6]),
		K:           int(shard[7]),
		N:           int(shard[8]),
		ShardIndex:  int(shard[9]),
		ObjectID:    ObjectID(shard[12:28]),
		ChunkIndex:  binary.LittleEndian.Uint64(shard[28:36]),
		ChunkSize:   int(binary.LittleEndian.Uint32(shard[36:40])),
		PlainSize:   int(binary.LittleEndian.Uint32(shard[40:44])),
		CipherSize:  int(binary.LittleEndian.Uint32(shard[44:48])),
		PayloadSize: int(binary.LittleEndian.Uint32(shard[48:52])),
	}
	switch {
	case !h.Compression.Valid():
		return h, fmt.Errorf("%w: unknown compression %d", ErrBadShard, shard[6])
	case checkShape(h.K, h.N) != nil:
		return h, fmt.Errorf("%w: %w", ErrBadShard, checkShape(h.K, h.N))
	case h.ShardIndex >= h.N:
		return h, fmt.Errorf("%w: shard index %d, n=%d", ErrBadShard, h.ShardIndex, h.N)
	case h.PayloadSize != len(shard)-ShardOverhead:
		return h, fmt.Errorf("%w: header says %d payload bytes, shard has %d", ErrBadShard, h.PayloadSize, len(shard)-ShardOverhead)
	case h.PayloadSize != ceilDiv(h.CipherSize, h.K):
		return h, fmt.Errorf("%w: payload %d bytes inconsistent with ciphertext %d bytes and k=%d", ErrBadShard, h.PayloadSize, h.CipherSize, h.K)
	}
	return h, nil
}

// shardChecksum computes a shard's checksum: keyed BLAKE3-256 of its header
// and payload, under the object's shard key. Keyed, it is also a MAC: only a
// holder of the master key can make a shard whose checksum verifies, so the
// header of such a shard can be trusted without any metadata.
func shardChecksum(key, headerAndPayload []byte) Checksum {
	h, err := blake3.NewKeyed(key)
	if err != nil {
		panic("pipeline: blake3 key: " + err.Error()) // only for a key that is not 32 bytes
	}
	h.Write(headerAndPayload)
	var sum Checksum
	h.Sum(sum[:0])
	return sum
}

// errChecksum marks a shard whose trailing checksum does not verify.
var errChecksum = errors.New("checksum does not verify (corrupt shard, or wrong key)")

// verifyChecksum recomputes the checksum of a shard of at least
// ShardOverhead bytes and compares it with the shard's trailer. It returns
// the checksum.
func verifyChecksum(key, shard []byte) (Checksum, error) {
	body := shard[:len(shard)-ChecksumSize]
	sum := shardChecksum(key, body)
	if subtle.ConstantTimeCompare(sum[:], shard[len(body):]) != 1 {
		return sum, fmt.Errorf("%w: %w", ErrBadShard, errChecksum)
	}
	return sum, nil
}

// InspectShard decodes a shard's header and verifies its checksum with the
// shard key derived from master and the object id the header names. It is
// meant for rebuilding metadata from the data backends: a shard that passes
// was written by a holder of the master key, so its header can be trusted.
// A wrong key (or a damaged shard) gives an error wrapping ErrBadShard and
// ErrDecrypt.
func InspectShard(master MasterKey, shard []byte) (ShardHeader, Checksum, error) {
	h, err := parseHeader(shard)
	if err != nil {
		return h, Checksum{}, err
	}
	sum, err := verifyChecksum(deriveKey(master, h.ObjectID[:], infoShardKey), shard)
	if err != nil {
		return h, sum, fmt.Errorf("%w (%w)", err, ErrDecrypt)
	}
	return h, sum, nil
}

// sealShard writes the header and checksum around a shard's payload and
// returns the checksum.
func sealShard(s, key []byte, id ObjectID, c *ChunkMeta, k, n, chunkSize, idx int) Checksum {
	putHeader(s, id, c, k, n, chunkSize, idx)
	body := HeaderSize + c.PayloadSize
	sum := shardChecksum(key, s[:body])
	copy(s[body:], sum[:])
	return sum
}
