package pipeline

import (
	"fmt"
)

// Object is the metadata of one stored object (one version of a file): what
// a Decoder needs, besides the master key and the shards, to rebuild it. The
// metadata store keeps it, encrypted (see MetaSealer), next to the path,
// times and shard locations it adds.
type Object struct {
	Version     int         // shard format version, FormatVersion
	ID          ObjectID    // random; salts the object's keys
	K           int         // data shards per chunk: any K rebuild it
	N           int         // total shards per chunk (N−K parity)
	ChunkSize   int         // plaintext bytes per chunk (the last may be shorter)
	Compression Compression // configured algorithm; each chunk records what it used
	Size        int64       // plaintext bytes
	Checksum    Checksum    // BLAKE3-256 of the whole plaintext
	Chunks      []ChunkMeta // in order, Chunks[i].Index == i
}

// ChunkMeta is the metadata of one chunk.
type ChunkMeta struct {
	Index       uint64      // position in the object, from 0
	Final       bool        // the last chunk of the object
	Compression Compression // algorithm used; CompressionNone when compressing did not shrink the chunk
	PlainSize   int         // plaintext bytes
	CipherSize  int         // ciphertext bytes: stored (compressed or plain) bytes + 16-byte GCM tag
	PayloadSize int         // erasure-coded bytes in each shard: ceil(CipherSize/K)
	Padding     int         // zero bytes appended to the ciphertext before splitting: K*PayloadSize − CipherSize
	ShardSize   int         // bytes of each complete shard: header + payload + checksum
	Checksums   []Checksum  // each shard's checksum (its trailer), by shard index; nil or zero = unknown
}

// flags returns the chunk's flag byte as stored in headers and the AD.
func (c *ChunkMeta) flags() byte {
	if c.Final {
		return flagFinal
	}
	return 0
}

// validate checks that the object's fields are consistent with each other
// and with the format, so a Decoder never indexes out of range or allocates
// absurd buffers because of bad metadata.
func (o *Object) validate() error {
	if o.Version != FormatVersion {
		return fmt.Errorf("%w: format version %d, this build reads %d", ErrBadMetadata, o.Version, FormatVersion)
	}
	if err := checkShape(o.K, o.N); err != nil {
		return fmt.Errorf("%w: %w", ErrBadMetadata, err)
	}
	if o.ChunkSize < 1 || o.ChunkSize > MaxChunkSize(o.K) {
		return fmt.Errorf("%w: chunk size %d out of range 1..%d for k=%d", ErrBadMetadata, o.ChunkSize, MaxChunkSize(o.K), o.K)
	}
	if len(o.Chunks) == 0 {
		return fmt.Errorf("%w: no chunks (an empty object has one empty chunk)", ErrBadMetadata)
	}
	var total int64
	for i := range o.Chunks {
		c := &o.Chunks[i]
		if c.Index != uint64(i) {
			return fmt.Errorf("%w: chunk %d has index %d", ErrBadMetadata, i, c.Index)
		}
		if c.Final != (i == len(o.Chunks)-1) {
			return fmt.Errorf("%w: chunk %d: final flag %v, but the object has %d chunks", ErrBadMetadata, i, c.Final, len(o.Chunks))
		}
		if err := o.validateChunk(c); err != nil {
			return err
		}
		if !c.Final && c.PlainSize != o.ChunkSize {
			return fmt.Errorf("%w: chunk %d holds %d bytes, only the last chunk may be shorter than %d", ErrBadMetadata, i, c.PlainSize, o.ChunkSize)
		}
		total += int64(c.PlainSize)
	}
	if total != o.Size {
		return fmt.Errorf("%w: chunks hold %d bytes, object size is %d", ErrBadMetadata, total, o.Size)
	}
	return nil
}

func (o *Object) validateChunk(c *ChunkMeta) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: chunk %d: %s", ErrBadMetadata, c.Index, fmt.Sprintf(format, args...))
	}
	switch {
	case !c.Compression.Valid():
		return bad("unknown compression %d", uint8(c.Compression))
	case c.PlainSize < 0 || c.PlainSize > o.ChunkSize:
		return bad("plaintext size %d out of range 0..%d", c.PlainSize, o.ChunkSize)
	case c.CipherSize < tagSize || c.CipherSize > c.PlainSize+tagSize:
		return bad("ciphertext size %d out of range %d..%d", c.CipherSize, tagSize, c.PlainSize+tagSize)
	case c.Compression == CompressionNone && c.CipherSize != c.PlainSize+tagSize:
		return bad("uncompressed, yet ciphertext size %d ≠ %d + %d", c.CipherSize, c.PlainSize, tagSize)
	case c.PayloadSize != ceilDiv(c.CipherSize, o.K):
		return bad("payload size %d, want ceil(%d/%d) = %d", c.PayloadSize, c.CipherSize, o.K, ceilDiv(c.CipherSize, o.K))
	case c.Padding != o.K*c.PayloadSize-c.CipherSize:
		return bad("padding %d, want %d", c.Padding, o.K*c.PayloadSize-c.CipherSize)
	case c.ShardSize != HeaderSize+c.PayloadSize+ChecksumSize:
		return bad("shard size %d, want %d", c.ShardSize, HeaderSize+c.PayloadSize+ChecksumSize)
	case c.Checksums != nil && len(c.Checksums) != o.N:
		return bad("%d shard checksums for n=%d", len(c.Checksums), o.N)
	}
	return nil
}

// Chunk returns the metadata of chunk i, or an error when there is none.
func (o *Object) Chunk(i uint64) (*ChunkMeta, error) {
	if i >= uint64(len(o.Chunks)) {
		return nil, fmt.Errorf("%w: object %s has %d chunks, no chunk %d", ErrBadMetadata, o.ID, len(o.Chunks), i)
	}
	return &o.Chunks[i], nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
