package pipeline

import "errors"

// Sentinel errors; the errors this package returns wrap them with context, so
// test for them with errors.Is.
var (
	// ErrDecrypt means a chunk or metadata record failed authentication: the
	// master key is wrong, or the data was tampered with.
	ErrDecrypt = errors.New("decryption failed: wrong key or tampered data")

	// ErrNotEnoughShards means fewer than K shards of a chunk were present
	// and valid, so the chunk cannot be rebuilt.
	ErrNotEnoughShards = errors.New("not enough valid shards")

	// ErrBadShard means one shard failed verification (size, checksum,
	// header). Decoding treats such a shard as missing.
	ErrBadShard = errors.New("invalid shard")

	// ErrChecksum means the rebuilt file's size or BLAKE3 checksum differs
	// from the one recorded when it was stored.
	ErrChecksum = errors.New("whole-file checksum mismatch")

	// ErrBadMetadata means an Object or ChunkMeta is inconsistent (wrong
	// chunk order, sizes that do not add up, unknown version, …).
	ErrBadMetadata = errors.New("invalid object metadata")
)
