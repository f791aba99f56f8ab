package config

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/argon2"

	"qss/zstor/pipeline"
)

// Argon2id defaults for passphrase_file: RFC 9106's second recommended
// setting (t=3, 64 MiB, 4 lanes), about a tenth of a second on a server core.
const (
	DefaultArgon2Time      = 3
	DefaultArgon2MemoryKiB = 64 << 10
	DefaultArgon2Threads   = 4

	// MinPassphraseSaltLen is the shortest passphrase_salt accepted: 16
	// bytes, argon2's recommended salt length.
	MinPassphraseSaltLen = 16
)

// resolve checks an [encryption] table (at key) and produces its master key.
func (r *rawEncryption) resolve(key, dir string) (*Encryption, error) {
	if r.Algorithm != "" && !strings.EqualFold(r.Algorithm, "AES") {
		return nil, invalid(key+".algorithm", "unknown encryption algorithm %q (want \"AES\": AES-256-GCM)", r.Algorithm)
	}
	e := &Encryption{Algorithm: "AES"}
	hasArgon := r.PassphraseSalt != "" || r.Argon2Time != nil || r.Argon2MemoryKiB != nil || r.Argon2Threads != nil
	switch {
	case r.Key != "" && r.PassphraseFile != "":
		return nil, invalid(key, "set key or passphrase_file, not both")
	case r.Key != "":
		if hasArgon {
			return nil, invalid(key, "passphrase_salt and argon2_* only go with passphrase_file")
		}
		k, err := pipeline.ParseMasterKey(r.Key)
		if err != nil {
			return nil, invalid(key+".key", "%v", err)
		}
		e.Key, e.Source = k, "key"
	case r.PassphraseFile != "":
		k, err := r.passphraseKey(key, dir)
		if err != nil {
			return nil, err
		}
		e.Key, e.Source = k, "passphrase_file "+r.PassphraseFile
	default:
		return nil, invalid(key, "no key: set key (64 hex digits) or passphrase_file")
	}
	return e, nil
}

// passphraseKey reads passphrase_file and stretches it with argon2id.
func (r *rawEncryption) passphraseKey(key, dir string) (pipeline.MasterKey, error) {
	var mk pipeline.MasterKey
	if len(r.PassphraseSalt) < MinPassphraseSaltLen {
		return mk, invalid(key+".passphrase_salt", "%d bytes, must be at least %d (a unique, non-secret string kept with the config, e.g. 32 hex digits)", len(r.PassphraseSalt), MinPassphraseSaltLen)
	}
	t, m, p := DefaultArgon2Time, DefaultArgon2MemoryKiB, DefaultArgon2Threads
	if r.Argon2Time != nil {
		t = *r.Argon2Time
	}
	if r.Argon2MemoryKiB != nil {
		m = *r.Argon2MemoryKiB
	}
	if r.Argon2Threads != nil {
		p = *r.Argon2Threads
	}
	switch {
	case t < 1 || t > 1000:
		return mk, invalid(key+".argon2_time", "is %d, must be 1..1000", t)
	case p < 1 || p > 255:
		return mk, invalid(key+".argon2_threads", "is %d, must be 1..255", p)
	case m < 8*p || m > 16<<20:
		return mk, invalid(key+".argon2_memory_kib", "is %d, must be %d..%d (KiB; at least 8 per thread)", m, 8*p, 16<<20)
	}

	path := r.PassphraseFile
	if !filepath.IsAbs(path) && dir != "" {
		path = filepath.Join(dir, path)
	}
	info, err := os.Stat(path)
	if err != nil {
		return mk, invalid(key+".passphrase_file", "%v", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		slog.Warn("zstor config: passphrase file is readable by others; chmod 600 it",
			slog.String("key", key+".passphrase_file"), slog.String("path", path),
			slog.String("mode", info.Mode().Perm().String()))
	}
	pass, err := os.ReadFile(path)
	if err != nil {
		return mk, invalid(key+".passphrase_file", "%v", err)
	}
	// One trailing newline is the file's, not the passphrase's.
	pass = bytes.TrimSuffix(pass, []byte("\n"))
	pass = bytes.TrimSuffix(pass, []byte("\r"))
	if len(pass) == 0 {
		return mk, invalid(key+".passphrase_file", "%s is empty", path)
	}
	copy(mk[:], argon2.IDKey(pass, []byte(r.PassphraseSalt), uint32(t), uint32(m), uint8(p), pipeline.KeySize))
	clear(pass)
	return mk, nil
}
