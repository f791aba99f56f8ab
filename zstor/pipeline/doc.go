// Package pipeline is zstor's store pipeline: it turns a stream of plaintext
// into erasure-coded, encrypted, self-describing shards, and shards back into
// the plaintext. It knows nothing about where shards go; the caller writes
// them to backends and keeps the metadata (Object, ChunkMeta) this package
// produces.
//
// # Store
//
// An Encoder cuts the input into chunks of ChunkSize bytes (the last one may
// be shorter; an empty input is one empty chunk). Each chunk is
//
//  1. compressed with the configured algorithm, unless that does not shrink
//     it, in which case it is stored as is (the choice is recorded per chunk);
//  2. sealed with AES-256-GCM under the object's data key;
//  3. split into K data shards and N−K parity shards by Reed-Solomon coding
//     over the ciphertext (zero padding up to a multiple of K, recorded);
//  4. wrapped, shard by shard, in a header that names the object, chunk and
//     shard, and closed by a checksum: keyed BLAKE3-256 of header and
//     payload. Keyed, the checksum also authenticates the shard, so a shard
//     describes itself trustworthily even without metadata; the metadata
//     records it too.
//
// Chunks are processed concurrently, at most Concurrency at a time plus a
// small constant, and handed to the caller strictly in order, so memory stays
// bounded whatever the size of the input. The whole-file checksum (BLAKE3-256
// of the plaintext) and size are returned at the end.
//
// # Retrieve
//
// A Decoder rebuilds a chunk from any K shards that verify; a shard whose
// checksum or header does not verify is treated exactly like a missing
// one. Reed-Solomon reconstruction runs only when a data shard is missing.
// Decode writes the chunks in order to an io.Writer and checks the whole-file
// checksum and size at the end.
//
// # Keys and nonces
//
// One 32-byte master key. Every object gets a random 16-byte object id, and
// its keys are derived with HKDF-SHA256 from the master key with the object
// id as salt: the data key with info "zstor data key v1", the shard
// checksum key with info "zstor shard key v1". Metadata records are sealed by
// MetaSealer under keys derived with info "zstor metadata key v1", so no key
// is ever shared between the data and the metadata.
//
// The GCM nonce of a chunk is its chunk index (4 zero bytes, then the index
// as a big-endian uint64). A nonce is never reused under one key: the data key
// is unique to the object because the object id is 128 random bits (two
// objects share an id with probability about m²/2¹²⁹ for m objects), and
// within an object the Encoder seals each chunk index exactly once. Nothing
// ever re-encrypts an existing object: storing a changed file makes a new
// object with a new id, and repair (Decoder.RebuildShards) recomputes shards
// from the existing ciphertext without sealing again.
//
// The associated data of a chunk binds the format version, the chunk flags,
// the compression used, K, N, the object id, the chunk index, the chunk size
// and the plaintext length, so a chunk cannot be replayed into another object,
// position or layout. The shard index is bound by the shard checksum rather than
// the AEAD, since encryption happens before the chunk is split into shards.
//
// The byte format is documented in docs/zstor-format.md ("zstor shard format
// v1").
package pipeline
