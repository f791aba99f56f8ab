// Package users keeps the accounts of the qsfs web and WebDAV interface: a
// small file, <path>/users.json, of names and argon2id password hashes,
// managed by `qsfs user add|passwd|remove|list` and read by the web server
// on every login (so a change made by the command takes effect at once).
//
// Passwords are never stored: each entry holds an argon2id hash in the PHC
// string format, "$argon2id$v=19$m=65536,t=1,p=2$<salt>$<hash>" (unpadded
// base64), with a fresh 16-byte salt. Verify compares in constant time and
// does the same work for an unknown name as for a known one, so neither the
// answer's timing nor its content tells which names exist.
//
// The file is replaced atomically (temp file, fsync, rename, directory
// fsync): a crash leaves the old file or the new one, never a mix. Changes
// are read-modify-write under an exclusive flock on <path>/users.json.lock,
// so two processes adding users at once lose neither entry. A file that does
// not parse is an error, and is never overwritten.
//
// The format is documented in docs/qsfs.md ("Web users").
package users

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/sys/unix"
)

// FileName is the user file's name inside the qsfs path.
const FileName = "users.json"

// Version is the version of the users.json format.
const Version = 1

// Name and password limits.
const (
	MaxNameLen     = 64
	MinPasswordLen = 8
	MaxPasswordLen = 1024
)

// Errors, matched with errors.Is.
var (
	ErrExists      = errors.New("user already exists")
	ErrNotFound    = errors.New("no such user")
	ErrBadName     = errors.New("invalid user name")
	ErrBadPassword = errors.New("invalid password")
	ErrCorrupt     = errors.New("corrupt user file")
)

// Argon2id parameters of new hashes: 64 MiB, one pass, two lanes (about
// 50–100 ms on a server core): RFC 9106's second recommended setting with
// t = 1. Stored hashes carry their own parameters, so raising these later
// keeps old hashes valid. Tests lower them.
var params = argonParams{memoryKiB: 64 << 10, time: 1, threads: 2}

type argonParams struct {
	memoryKiB uint32
	time      uint32
	threads   uint8
}

const (
	saltLen = 16
	hashLen = 32
)

// User is a user as List returns it (no hash).
type User struct {
	Name    string
	Created time.Time
	// PasswordSet is when the password was last set (Created for a user
	// whose password never changed).
	PasswordSet time.Time
}

// entry is one user in users.json.
type entry struct {
	Name    string    `json:"name"`
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
	// PasswordSet is absent in files written before it existed: Created.
	PasswordSet time.Time `json:"password_set,omitzero"`
}

func (e entry) passwordSet() time.Time {
	if e.PasswordSet.IsZero() {
		return e.Created
	}
	return e.PasswordSet
}

// file is users.json.
type file struct {
	Version int     `json:"version"`
	Users   []entry `json:"users"`
}

// Store is the user file of one qsfs path. It holds no state between calls:
// every call reads the file, so several processes may share it.
type Store struct {
	dir string
}

// Open returns the store of the qsfs path dir, which must exist; users.json
// is created by the first Add.
func Open(dir string) (*Store, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("users: %s is not a directory", dir)
	}
	return &Store{dir: dir}, nil
}

// Path is the user file's path.
func (s *Store) Path() string { return filepath.Join(s.dir, FileName) }

// CheckName reports whether name is a valid user name: 1 to 64 of
// [a-zA-Z0-9._-], not starting with '.'.
func CheckName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w %q: must be 1 to %d characters", ErrBadName, name, MaxNameLen)
	}
	if name[0] == '.' {
		return fmt.Errorf("%w %q: must not start with '.'", ErrBadName, name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%w %q: only letters, digits, '.', '_' and '-' are allowed", ErrBadName, name)
		}
	}
	return nil
}

// CheckPassword reports whether password is acceptable: 8 to 1024 bytes.
func CheckPassword(password string) error {
	if len(password) < MinPasswordLen || len(password) > MaxPasswordLen {
		return fmt.Errorf("%w: %d bytes, must be %d to %d", ErrBadPassword, len(password), MinPasswordLen, MaxPasswordLen)
	}
	return nil
}

// Add adds a user; ErrExists if the name is taken.
func (s *Store) Add(name, password string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	h, err := hashPassword(password)
	if err != nil {
		return err
	}
	return s.update(func(f *file) error {
		if f.find(name) >= 0 {
			return fmt.Errorf("users: %q: %w", name, ErrExists)
		}
		now := time.Now().UTC()
		f.Users = append(f.Users, entry{Name: name, Hash: h, Created: now.Truncate(time.Second), PasswordSet: now})
		return nil
	})
}

// SetPassword replaces a user's password; ErrNotFound if there is no such
// user.
func (s *Store) SetPassword(name, password string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	h, err := hashPassword(password)
	if err != nil {
		return err
	}
	return s.update(func(f *file) error {
		i := f.find(name)
		if i < 0 {
			return fmt.Errorf("users: %q: %w", name, ErrNotFound)
		}
		f.Users[i].Hash = h
		f.Users[i].PasswordSet = time.Now().UTC()
		return nil
	})
}

// Remove deletes a user; ErrNotFound if there is no such user.
func (s *Store) Remove(name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	return s.update(func(f *file) error {
		i := f.find(name)
		if i < 0 {
			return fmt.Errorf("users: %q: %w", name, ErrNotFound)
		}
		f.Users = slices.Delete(f.Users, i, i+1)
		return nil
	})
}

// List returns the users sorted by name; none when users.json does not exist.
func (s *Store) List() ([]User, error) {
	f, err := s.read()
	if err != nil {
		return nil, err
	}
	out := make([]User, 0, len(f.Users))
	for _, e := range f.Users {
		out = append(out, User{Name: e.Name, Created: e.Created, PasswordSet: e.passwordSet()})
	}
	slices.SortFunc(out, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Check tells whether name is a user and when its password was last set,
// without hashing anything: a server checks with it that a session's user
// still exists and that the session is newer than the password.
func (s *Store) Check(name string) (exists bool, passwordSet time.Time, err error) {
	f, err := s.read()
	if err != nil {
		return false, time.Time{}, err
	}
	if i := f.find(name); i >= 0 {
		return true, f.Users[i].passwordSet(), nil
	}
	return false, time.Time{}, nil
}

// Verify reports whether password is name's password. A wrong password, an
// unknown or invalid name and an out-of-range password are all (false, nil),
// after the same argon2id work as a right one; an error means the file could
// not be read.
func (s *Store) Verify(name, password string) (bool, error) {
	f, err := s.read()
	if err != nil {
		return false, err
	}
	stored := ""
	if i := f.find(name); i >= 0 {
		stored = f.Users[i].Hash
	}
	return verify(stored, password), nil
}

// update runs change on the current file under the lock and writes the
// result atomically.
func (s *Store) update(change func(*file) error) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	f, err := s.read()
	if err != nil {
		return err
	}
	if err := change(f); err != nil {
		return err
	}
	return s.write(f)
}

// lock takes the exclusive flock that serialises changes, between processes
// and between goroutines (each call opens its own file description).
func (s *Store) lock() (unlock func(), err error) {
	path := filepath.Join(s.dir, FileName+".lock")
	lf, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("users: lock: %w", err)
	}
	for {
		err = unix.Flock(int(lf.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		lf.Close()
		return nil, fmt.Errorf("users: lock %s: %w", path, err)
	}
	return func() { lf.Close() }, nil // closing releases the flock
}

// read loads and checks users.json; a missing file is an empty one.
func (s *Store) read() (*file, error) {
	data, err := os.ReadFile(s.Path())
	if errors.Is(err, fs.ErrNotExist) {
		return &file{Version: Version}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	var f file
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, s.corrupt("%v", err)
	}
	if dec.More() {
		return nil, s.corrupt("data after the JSON object")
	}
	if f.Version != Version {
		return nil, s.corrupt("version %d, this qsfs reads version %d", f.Version, Version)
	}
	seen := map[string]bool{}
	for i, e := range f.Users {
		if err := CheckName(e.Name); err != nil {
			return nil, s.corrupt("user %d: %v", i, err)
		}
		if seen[e.Name] {
			return nil, s.corrupt("user %q is listed twice", e.Name)
		}
		seen[e.Name] = true
		if _, _, _, err := parseHash(e.Hash); err != nil {
			return nil, s.corrupt("user %q: %v", e.Name, err)
		}
	}
	return &f, nil
}

func (s *Store) corrupt(format string, args ...any) error {
	return fmt.Errorf("users: %s: %w: %s (the file is left as it is; fix or remove it)", s.Path(), ErrCorrupt, fmt.Sprintf(format, args...))
}

// write replaces users.json atomically: users.json.tmp is written and
// fsynced, renamed over users.json, and the directory fsynced. The fixed
// temp name (under the lock) means a crash leaves at most one stale temp
// file, which the next write truncates.
func (s *Store) write(f *file) error {
	f.Version = Version
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("users: %w", err)
	}
	data = append(data, '\n')
	tmp := s.Path() + ".tmp"
	t, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("users: %w", err)
	}
	err = t.Chmod(0o600)
	if err == nil {
		_, err = t.Write(data)
	}
	if err == nil {
		err = t.Sync()
	}
	if cerr := t.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.Path())
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("users: writing %s: %w", s.Path(), err)
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("users: fsync %s: %w", s.dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("users: fsync %s: %w", s.dir, err)
	}
	return nil
}

func (f *file) find(name string) int {
	return slices.IndexFunc(f.Users, func(e entry) bool { return e.Name == name })
}

var b64 = base64.RawStdEncoding

// hashPassword returns the PHC string of a fresh argon2id hash of password.
func hashPassword(password string) (string, error) {
	if err := CheckPassword(password); err != nil {
		return "", err
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("users: salt: %w", err)
	}
	p := params
	key := idKey([]byte(password), salt, p.time, p.memoryKiB, p.threads, hashLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memoryKiB, p.time, p.threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Bounds on the parameters of a stored hash, so a tampered file cannot make
// Verify allocate gigabytes or spin.
const (
	maxMemoryKiB = 4 << 20
	maxTime      = 64
)

// parseHash reads a PHC argon2id string.
func parseHash(s string) (p argonParams, salt, key []byte, err error) {
	parts := strings.Split(s, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errors.New("hash is not an argon2id PHC string")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, fmt.Errorf("argon2id version %q, want v=%d", parts[2], argon2.Version)
	}
	var m, t, th uint64
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &th); err != nil || n != 3 ||
		fmt.Sprintf("m=%d,t=%d,p=%d", m, t, th) != parts[3] {
		return p, nil, nil, fmt.Errorf("argon2id parameters %q", parts[3])
	}
	if t < 1 || t > maxTime || th < 1 || th > 255 || m < 8*th || m > maxMemoryKiB {
		return p, nil, nil, fmt.Errorf("argon2id parameters %q out of range", parts[3])
	}
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, errors.New("argon2id salt is not base64 of at least 8 bytes")
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 || len(key) > 64 {
		return p, nil, nil, errors.New("argon2id hash is not base64 of 16 to 64 bytes")
	}
	return argonParams{memoryKiB: uint32(m), time: uint32(t), threads: uint8(th)}, salt, key, nil
}

// idKey is argon2.IDKey; tests wrap it to see the work Verify does.
var idKey = argon2.IDKey

// dummySalt and dummyKey stand in for an unknown user's hash: Verify hashes
// the password with the current parameters and compares in constant time,
// as for a real user, then answers false whatever the comparison says.
var (
	dummySalt = make([]byte, saltLen)
	dummyKey  = make([]byte, hashLen)
)

// verify checks password against the stored PHC string; "" stands for an
// unknown user.
func verify(stored, password string) bool {
	p, salt, key, err := parseHash(stored)
	known := err == nil
	if !known {
		p, salt, key = params, dummySalt, dummyKey
	}
	// An out-of-range password is still hashed (capped at the maximum
	// length), so its answer costs the same as any other.
	pw := []byte(password)
	valid := CheckPassword(password) == nil
	if len(pw) > MaxPasswordLen {
		pw = pw[:MaxPasswordLen]
	}
	got := idKey(pw, salt, p.time, p.memoryKiB, p.threads, uint32(len(key)))
	eq := subtle.ConstantTimeCompare(got, key) == 1
	return eq && known && valid
}
