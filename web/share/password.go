package share

import (
	"crypto/rand"
	"crypto/subtle"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters of new hashes (OWASP's minimum: 19 MiB, 2 passes,
// 1 lane). Each hash keeps its own, so they can be raised later.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
)

// PasswordHash is an argon2id hash with its salt and parameters.
type PasswordHash struct {
	Salt    []byte `json:"salt"`
	Hash    []byte `json:"hash"`
	Time    uint32 `json:"t"`
	Memory  uint32 `json:"m"`
	Threads uint8  `json:"p"`
}

// HashPassword hashes pw with a fresh random salt.
func HashPassword(pw string) *PasswordHash {
	salt := make([]byte, 16)
	rand.Read(salt)
	return &PasswordHash{
		Salt: salt, Time: argonTime, Memory: argonMemory, Threads: argonThreads,
		Hash: argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen),
	}
}

// Verify reports whether pw matches, comparing in constant time.
func (h *PasswordHash) Verify(pw string) bool {
	if h == nil || len(h.Hash) == 0 || h.Time == 0 || h.Memory == 0 || h.Threads == 0 {
		return false
	}
	got := argon2.IDKey([]byte(pw), h.Salt, h.Time, h.Memory, h.Threads, uint32(len(h.Hash)))
	return subtle.ConstantTimeCompare(got, h.Hash) == 1
}
