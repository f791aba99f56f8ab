// Package share is share links: a file or folder of the tree made
// reachable without a login through an unguessable id (128 random bits),
// optionally behind a password and an expiry, revocable by its owner.
//
// Links are kept in a bbolt file (Store). The logged-in API (API.Routes)
// creates, lists and revokes them; the public routes (API.PublicRoutes)
// serve them. Unknown, expired and revoked ids answer the same 404, so a
// guesser learns nothing. A correct password sets a cookie scoped to the
// link holding an HMAC of the link and its password, so another link's
// cookie, or a cookie from before the password changed, does not unlock.
package share

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrNotFound is returned for an unknown id, or one of another owner.
var ErrNotFound = errors.New("share: no such link")

var (
	bucketShares = []byte("shares")
	bucketMeta   = []byte("meta")
	keyHMAC      = []byte("hmac-key")
)

// Share is one link.
type Share struct {
	ID      string    `json:"id"`   // 16 random bytes, base64url without padding
	Path    string    `json:"path"` // Clean name of the shared file or folder
	Kind    string    `json:"kind"` // "file" or "dir"
	Owner   string    `json:"owner"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"` // zero: never
	// Password is the argon2id hash of the password; nil: none.
	Password *PasswordHash `json:"password,omitempty"`
	Revoked  bool          `json:"revoked,omitempty"`
}

// Live reports whether the link answers at now: not revoked, not expired.
func (s *Share) Live(now time.Time) bool {
	return !s.Revoked && (s.Expires.IsZero() || now.Before(s.Expires))
}

// Store keeps the links and the server's cookie key in a bbolt file.
type Store struct {
	db  *bolt.DB
	key []byte
}

// Open opens (creating if needed) the store at path. Another process
// holding it makes Open fail after a second rather than wait.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("share: open %s: %w", path, err)
	}
	s := &Store{db: db}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketShares); err != nil {
			return err
		}
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if k := m.Get(keyHMAC); len(k) == 32 {
			s.key = append([]byte(nil), k...)
			return nil
		}
		s.key = make([]byte, 32)
		rand.Read(s.key)
		return m.Put(keyHMAC, s.key)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("share: init %s: %w", path, err)
	}
	return s, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// NewID is a fresh link id: 128 random bits, base64url.
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validID reports whether id has NewID's form.
func validID(id string) bool {
	if len(id) != 22 {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(id)
	return err == nil && len(b) == 16
}

// Create stores sh with a new id (and Created, if zero) and returns it.
func (s *Store) Create(sh Share) (Share, error) {
	sh.ID = NewID()
	if sh.Created.IsZero() {
		sh.Created = time.Now().UTC()
	}
	return sh, s.put(sh)
}

func (s *Store) put(sh Share) error {
	b, err := json.Marshal(sh)
	if err != nil {
		return err
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketShares).Put([]byte(sh.ID), b)
	}); err != nil {
		return fmt.Errorf("share: save %s: %w", sh.ID, err)
	}
	return nil
}

// Get returns the link id, revoked or expired included; ErrNotFound when
// there is none.
func (s *Store) Get(id string) (Share, error) {
	var sh Share
	if !validID(id) {
		return sh, ErrNotFound
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketShares).Get([]byte(id))
		if b == nil {
			return ErrNotFound
		}
		return json.Unmarshal(b, &sh)
	})
	return sh, err
}

// List returns owner's links that are not revoked, newest first.
func (s *Store) List(owner string) ([]Share, error) {
	var out []Share
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketShares).ForEach(func(k, v []byte) error {
			var sh Share
			if err := json.Unmarshal(v, &sh); err != nil {
				return fmt.Errorf("share %s: %w", k, err)
			}
			if sh.Owner == owner && !sh.Revoked {
				out = append(out, sh)
			}
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, err
}

// update applies fn to owner's link id (ErrNotFound for another owner's
// or a revoked one) and saves it, in one transaction.
func (s *Store) update(id, owner string, fn func(*Share) error) error {
	if !validID(id) {
		return ErrNotFound
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketShares)
		b := bk.Get([]byte(id))
		if b == nil {
			return ErrNotFound
		}
		var sh Share
		if err := json.Unmarshal(b, &sh); err != nil {
			return err
		}
		if sh.Owner != owner || sh.Revoked {
			return ErrNotFound
		}
		if err := fn(&sh); err != nil {
			return err
		}
		nb, err := json.Marshal(sh)
		if err != nil {
			return err
		}
		return bk.Put([]byte(id), nb)
	})
}

// Revoke revokes owner's link id: from then on it answers 404. The
// record is kept (revoked), so the id is never reused.
func (s *Store) Revoke(id, owner string) error {
	return s.update(id, owner, func(sh *Share) error { sh.Revoked = true; return nil })
}

// SetPassword replaces the password of owner's link id ("" removes it).
// Cookies of the old password no longer unlock it.
func (s *Store) SetPassword(id, owner, password string) error {
	var ph *PasswordHash
	if password != "" {
		ph = HashPassword(password)
	}
	return s.update(id, owner, func(sh *Share) error { sh.Password = ph; return nil })
}
