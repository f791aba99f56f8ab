package qsfs

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The local state (state/qsfs.db, bbolt): what is stored remotely, what is
// waiting to be, the recovery points not yet stored and the remote objects
// no recovery point needs any more. Every change is one bbolt transaction
// (fsynced), so a kill -9 leaves it as it was before or after the change;
// the crash story in docs/qsfs.md relies on it.
var (
	bucketObjects = []byte("objects") // name → storedObject: on the backends
	bucketJobs    = []byte("jobs")    // name → job: to upload
	bucketGarbage = []byte("garbage") // name → unix ns when no stored point needed it
	bucketEpochs  = []byte("epochs")  // gen (8 bytes, big endian) → Manifest: cut, not stored yet
	bucketRetired = []byte("retired") // "ns/d<id>" → unix ns: data files compaction removed
	bucketMeta    = []byte("meta")    // "gen", "manifest"
)

// storedObject is what the state keeps of an object on the backends.
type storedObject struct {
	Size      int64     `json:"size"`
	Checksum  string    `json:"checksum"`
	MinShards int       `json:"min_shards"`
	At        time.Time `json:"at"`
}

// job is an upload waiting to run.
type job struct {
	Name   string    `json:"name"`
	Source string    `json:"source"` // local file to Put
	Temp   bool      `json:"temp"`   // Source is a snapshot copy, removed once stored
	Since  time.Time `json:"since"`
	Tries  int       `json:"tries"`
	Error  string    `json:"error,omitempty"`
}

type state struct {
	db *bolt.DB
}

func openState(path string) (*state, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("qsfs: %s is in use by another qsfs process", path)
	}
	if err != nil {
		return nil, fmt.Errorf("qsfs: open state: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketObjects, bucketJobs, bucketGarbage, bucketEpochs, bucketRetired, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("qsfs: open state: %w", err)
	}
	return &state{db: db}, nil
}

func (s *state) close() error { return s.db.Close() }

func genKey(g uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], g)
	return b[:]
}

func getJSON(b *bolt.Bucket, key []byte, v any) (bool, error) {
	raw := b.Get(key)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("qsfs state: %s/%s: %w", "bucket", key, err)
	}
	return true, nil
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

// stored returns the object name's record, if stored.
func (s *state) stored(name string) (storedObject, bool) {
	var o storedObject
	var ok bool
	s.db.View(func(tx *bolt.Tx) error {
		ok, _ = getJSON(tx.Bucket(bucketObjects), []byte(name), &o)
		return nil
	})
	return o, ok
}

// addJob queues an upload unless the same name is queued already (the
// older entry, with its older Since, is kept: uploads are idempotent).
func (s *state) addJobs(jobs []job) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		for _, j := range jobs {
			if b.Get([]byte(j.Name)) != nil {
				continue
			}
			if err := putJSON(b, []byte(j.Name), j); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *state) job(name string) (job, bool) {
	var j job
	var ok bool
	s.db.View(func(tx *bolt.Tx) error {
		ok, _ = getJSON(tx.Bucket(bucketJobs), []byte(name), &j)
		return nil
	})
	return j, ok
}

func (s *state) jobs() ([]job, error) {
	var out []job
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
			var j job
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("qsfs state: job %s: %w", k, err)
			}
			out = append(out, j)
			return nil
		})
	})
	return out, err
}

// jobDone records the object as stored and removes its job, in one
// transaction.
func (s *state) jobDone(name string, o storedObject) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := putJSON(tx.Bucket(bucketObjects), []byte(name), o); err != nil {
			return err
		}
		tx.Bucket(bucketGarbage).Delete([]byte(name))
		return tx.Bucket(bucketJobs).Delete([]byte(name))
	})
}

func (s *state) dropJob(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketJobs).Delete([]byte(name)) })
}

func (s *state) jobFailed(name string, err error) {
	s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		var j job
		if ok, _ := getJSON(b, []byte(name), &j); !ok {
			return nil
		}
		j.Tries++
		j.Error = err.Error()
		return putJSON(b, []byte(name), j)
	})
}

// nextGen reserves the next recovery point's generation.
func (s *state) nextGen() (uint64, error) {
	var g uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if raw := b.Get([]byte("gen")); len(raw) == 8 {
			g = binary.BigEndian.Uint64(raw)
		}
		g++
		return b.Put([]byte("gen"), genKey(g))
	})
	return g, err
}

func (s *state) putEpoch(m *Manifest) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketEpochs), genKey(m.Generation), m)
	})
}

// epochs lists the recovery points cut but not stored, oldest first.
func (s *state) epochs() ([]*Manifest, error) {
	var out []*Manifest
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEpochs).ForEach(func(k, v []byte) error {
			m := new(Manifest)
			if err := json.Unmarshal(v, m); err != nil {
				return fmt.Errorf("qsfs state: recovery point %x: %w", k, err)
			}
			out = append(out, m)
			return nil
		})
	})
	return out, err
}

// manifest is the last recovery point stored on the backends (nil: none).
func (s *state) manifest() (*Manifest, error) {
	var m *Manifest
	err := s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketMeta).Get([]byte("manifest"))
		if raw == nil {
			return nil
		}
		m = new(Manifest)
		return json.Unmarshal(raw, m)
	})
	return m, err
}

// committed records manifest m as stored: it and every older point are
// dropped from the epochs, and the objects that neither m nor a later
// point names become garbage (deleted after the grace period).
func (s *state) committed(m *Manifest, now time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := putJSON(tx.Bucket(bucketMeta), []byte("manifest"), m); err != nil {
			return err
		}
		eb := tx.Bucket(bucketEpochs)
		keep := m.objectNames()
		var drop [][]byte
		eb.ForEach(func(k, v []byte) error {
			if binary.BigEndian.Uint64(k) <= m.Generation {
				drop = append(drop, append([]byte(nil), k...))
				return nil
			}
			var later Manifest
			if json.Unmarshal(v, &later) == nil {
				for n := range later.objectNames() {
					keep[n] = true
				}
			}
			return nil
		})
		for _, k := range drop {
			eb.Delete(k)
		}
		// Objects queued for later points are needed too.
		tx.Bucket(bucketJobs).ForEach(func(k, _ []byte) error {
			keep[string(k)] = true
			return nil
		})
		gb := tx.Bucket(bucketGarbage)
		ts := make([]byte, 8)
		binary.BigEndian.PutUint64(ts, uint64(now.UnixNano()))
		return tx.Bucket(bucketObjects).ForEach(func(k, _ []byte) error {
			if keep[string(k)] || gb.Get(k) != nil || string(k) == manifestName {
				return nil
			}
			if m.isFuture(string(k)) {
				return nil
			}
			return gb.Put(append([]byte(nil), k...), ts)
		})
	})
}

// garbage lists the objects unneeded since before cutoff.
func (s *state) garbage(cutoff time.Time) []string {
	var out []string
	s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGarbage).ForEach(func(k, v []byte) error {
			if len(v) == 8 && int64(binary.BigEndian.Uint64(v)) <= cutoff.UnixNano() {
				out = append(out, string(k))
			}
			return nil
		})
	})
	return out
}

func (s *state) forget(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		tx.Bucket(bucketGarbage).Delete([]byte(name))
		return tx.Bucket(bucketObjects).Delete([]byte(name))
	})
}

func (s *state) retire(name string, now time.Time) error {
	ts := make([]byte, 8)
	binary.BigEndian.PutUint64(ts, uint64(now.UnixNano()))
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRetired).Put([]byte(name), ts) })
}

func (s *state) retired(name string) bool {
	var ok bool
	s.db.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketRetired).Get([]byte(name)) != nil
		return nil
	})
	return ok
}

// counts returns the number of queued jobs, stored objects and their bytes.
func (s *state) totals() (objects int, bytes int64, garbage int) {
	s.db.View(func(tx *bolt.Tx) error {
		tx.Bucket(bucketObjects).ForEach(func(_, v []byte) error {
			var o storedObject
			if json.Unmarshal(v, &o) == nil {
				objects++
				bytes += o.Size
			}
			return nil
		})
		garbage = tx.Bucket(bucketGarbage).Stats().KeyN
		return nil
	})
	return
}

// restored records a restored point: its objects are stored (the data
// files with the manifest's checksums, the fetched ones with theirs), it
// is the stored manifest, and generations continue after it.
func (s *state) restored(m *Manifest, fetched map[string]storedObject) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		ob := tx.Bucket(bucketObjects)
		for name, o := range fetched {
			if err := putJSON(ob, []byte(name), o); err != nil {
				return err
			}
		}
		for ns, p := range m.Namespaces {
			for id, d := range p.Data {
				if err := putJSON(ob, []byte(dataName(ns, id)), storedObject{Size: d.Size, Checksum: d.Checksum, At: m.Cut}); err != nil {
					return err
				}
			}
		}
		if err := putJSON(tx.Bucket(bucketMeta), []byte("manifest"), m); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put([]byte("gen"), genKey(m.Generation))
	})
}

// lowestShards is the fewest shards of any stored object (0: unknown).
func (s *state) lowestShards() int {
	low := 0
	s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketObjects).ForEach(func(_, v []byte) error {
			var o storedObject
			if json.Unmarshal(v, &o) == nil && o.MinShards > 0 && (low == 0 || o.MinShards < low) {
				low = o.MinShards
			}
			return nil
		})
	})
	return low
}
