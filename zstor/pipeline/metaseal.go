package pipeline

import (
	"crypto/rand"
	"fmt"
)

// Sealed metadata record layout (docs/zstor-format.md, "Metadata seal").
// Version 2 has the layout of version 1; only the version byte, which is
// part of the associated data, differs. It marks seals whose associated
// data is the metadata envelope's header and key (zstor/meta), where
// version 1 seals had only the key, so a seal of one kind never opens as
// the other.
const (
	metaVersion   = 2
	metaVersionV1 = 1
	metaSaltSize  = 16
	// MetaOverhead is what Seal adds to a record: version, salt, GCM tag.
	MetaOverhead = 1 + metaSaltSize + tagSize
)

// MetaSealer encrypts and authenticates metadata records for the metadata
// store. Each record gets a fresh random 16-byte salt and its own key,
// HKDF-SHA256(master, salt, "zstor metadata key v1") — a different info string
// from the data keys, so metadata and data never share a key. Because every
// key seals exactly one record, the GCM nonce can be fixed (all zero) and is
// still never reused under one key; no counter or nonce state is needed,
// and there is no limit on the number of records.
//
// A MetaSealer is safe for concurrent use.
type MetaSealer struct {
	master MasterKey
}

// NewMetaSealer returns a sealer for records under master (the metadata
// encryption key of the config, or else the data master key).
func NewMetaSealer(master MasterKey) *MetaSealer { return &MetaSealer{master: master} }

// Seal encrypts record and binds it to ad (for instance the record's key in
// the store, so a record cannot be swapped for another; may be nil). The
// result is version ‖ salt ‖ ciphertext ‖ tag, MetaOverhead bytes longer
// than record.
func (s *MetaSealer) Seal(record, ad []byte) ([]byte, error) {
	out := make([]byte, 1+metaSaltSize, MetaOverhead+len(record))
	out[0] = metaVersion
	rand.Read(out[1 : 1+metaSaltSize]) // never fails (crypto/rand contract since Go 1.24)
	aead, err := newGCM(deriveKey(s.master, out[1:1+metaSaltSize], infoMetadataKey))
	if err != nil {
		return nil, fmt.Errorf("pipeline: metadata: %w", err)
	}
	return aead.Seal(out, make([]byte, aead.NonceSize()), record, metaAD(metaVersion, ad)), nil
}

// Overhead is what Seal adds to a record: MetaOverhead.
func (s *MetaSealer) Overhead() int { return MetaOverhead }

// Open checks and decrypts a record made by Seal with the same ad, or by
// the Seal of earlier versions (seal version 1). A wrong key, a different
// ad or any change to the record gives an error wrapping ErrDecrypt.
func (s *MetaSealer) Open(sealed, ad []byte) ([]byte, error) {
	if len(sealed) < MetaOverhead {
		return nil, fmt.Errorf("pipeline: metadata record of %d bytes, shorter than %d: %w", len(sealed), MetaOverhead, ErrDecrypt)
	}
	if v := sealed[0]; v != metaVersion && v != metaVersionV1 {
		return nil, fmt.Errorf("pipeline: metadata record version %d, this build reads %d and %d: %w", v, metaVersionV1, metaVersion, ErrBadMetadata)
	}
	aead, err := newGCM(deriveKey(s.master, sealed[1:1+metaSaltSize], infoMetadataKey))
	if err != nil {
		return nil, fmt.Errorf("pipeline: metadata: %w", err)
	}
	rec, err := aead.Open(nil, make([]byte, aead.NonceSize()), sealed[1+metaSaltSize:], metaAD(sealed[0], ad))
	if err != nil {
		return nil, fmt.Errorf("pipeline: metadata record: %w", ErrDecrypt)
	}
	return rec, nil
}

// metaAD prefixes the caller's associated data with the record version, so
// a record cannot be reinterpreted under another version.
func metaAD(version byte, ad []byte) []byte {
	return append([]byte{version}, ad...)
}
