package qsfs

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A recovery point: the state of every namespace at one cut, as objects on
// the backends. The last one stored is the object "manifest"; restore
// reads it and nothing else to know what to fetch (docs/qsfs.md, format
// qsfs-manifest version 1).

// ManifestFormat and ManifestVersion identify the manifest's JSON.
const (
	ManifestFormat  = "qsfs-manifest"
	ManifestVersion = 1
	manifestName    = "manifest"
)

// Manifest is one recovery point.
type Manifest struct {
	Format     string                     `json:"format"`
	Version    int                        `json:"version"`
	Generation uint64                     `json:"generation"`
	Cut        time.Time                  `json:"cut"`
	Namespaces map[string]*NamespacePoint `json:"namespaces"`
	// FirstWrite is the time of the oldest write this point captured
	// that no earlier point had (zero when unknown): the live RPO is
	// measured from it until the point is stored. Local only.
	FirstWrite time.Time `json:"-"`
}

// NamespacePoint is one namespace at a cut: data files 0…Active−1 (minus
// those compaction removed) with the index files that describe them.
type NamespacePoint struct {
	// Active is the namespace's active file id after the cut; the restored
	// namespace starts with empty files of this id.
	Active uint32 `json:"active"`
	// Mode is the namespace's mode (the index header's), for the empty
	// active index file a restore writes.
	Mode uint8 `json:"mode"`
	// Descriptor is the object holding the namespace's zdb-namespace file.
	Descriptor string `json:"descriptor"`
	// Indexes maps each closed index file id to the object holding its
	// content at the cut.
	Indexes map[uint32]string `json:"indexes"`
	// Data maps each closed data file id still in use to the object
	// (dataName) holding it.
	Data map[uint32]DataObject `json:"data"`
}

// DataObject is a stored data file: its size and BLAKE3-256 checksum (hex).
type DataObject struct {
	Size     int64  `json:"size"`
	Checksum string `json:"checksum"`
}

func newManifest(gen uint64, cut time.Time) *Manifest {
	return &Manifest{Format: ManifestFormat, Version: ManifestVersion, Generation: gen, Cut: cut.UTC(),
		Namespaces: map[string]*NamespacePoint{}}
}

func (m *Manifest) check() error {
	if m.Format != ManifestFormat {
		return fmt.Errorf("not a qsfs manifest (format %q)", m.Format)
	}
	if m.Version != ManifestVersion {
		return fmt.Errorf("qsfs manifest version %d: this build reads version %d", m.Version, ManifestVersion)
	}
	for ns, p := range m.Namespaces {
		if p == nil || p.Descriptor == "" {
			return fmt.Errorf("qsfs manifest: namespace %q has no descriptor", ns)
		}
		for id := range p.Indexes {
			if id >= p.Active {
				return fmt.Errorf("qsfs manifest: namespace %q: index %d beyond the active file %d", ns, id, p.Active)
			}
		}
	}
	return nil
}

// objectNames is every object the point needs.
func (m *Manifest) objectNames() map[string]bool {
	out := map[string]bool{}
	for ns, p := range m.Namespaces {
		out[p.Descriptor] = true
		for _, n := range p.Indexes {
			out[n] = true
		}
		for id := range p.Data {
			out[dataName(ns, id)] = true
		}
	}
	return out
}

// isFuture reports whether object name belongs to a point after m (it
// is not garbage for m not naming it).
func (m *Manifest) isFuture(name string) bool {
	ns, base, ok := strings.Cut(name, "/")
	if !ok {
		return false
	}
	p := m.Namespaces[ns]
	if strings.HasPrefix(base, "d") {
		id, err := strconv.ParseUint(base[1:], 10, 32)
		return err == nil && (p == nil || uint32(id) >= p.Active)
	}
	if i := strings.LastIndexByte(base, '.'); i >= 0 {
		g, err := strconv.ParseUint(base[i+1:], 10, 64)
		return err == nil && g > m.Generation
	}
	return false
}

// Object names: "<namespace>/d<id>" for a data file (immutable),
// "<namespace>/i<id>.<gen>" for an index file as cut at generation gen,
// "<namespace>/zdb-namespace.<gen>" for a descriptor.
func dataName(ns string, id uint32) string {
	return ns + "/d" + strconv.FormatUint(uint64(id), 10)
}

func indexName(ns string, id uint32, gen uint64) string {
	return ns + "/i" + strconv.FormatUint(uint64(id), 10) + "." + strconv.FormatUint(gen, 10)
}

func descName(ns string, gen uint64) string {
	return ns + "/zdb-namespace." + strconv.FormatUint(gen, 10)
}
