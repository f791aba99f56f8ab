package zdb

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Dump prints every index entry of every namespace under indexRoot, without
// opening or changing anything (zdb --dump).
func Dump(w io.Writer, indexRoot string) error {
	ents, err := os.ReadDir(indexRoot)
	if err != nil {
		return err
	}
	for _, ent := range ents {
		if !ent.IsDir() {
			continue
		}
		dir := filepath.Join(indexRoot, ent.Name())
		raw, err := os.ReadFile(filepath.Join(dir, NamespaceFileName))
		if err != nil {
			continue
		}
		d, err := ParseNamespaceFile(raw)
		if err != nil {
			fmt.Fprintf(w, "namespace %s: %v\n", ent.Name(), err)
			continue
		}
		fmt.Fprintf(w, "namespace %s: public=%v worm=%v password=%v maxsize=%d\n",
			d.Name, d.Public, d.Worm, d.Password != "", d.MaxSize)
		ids, err := listIDs(dir, 'i')
		if err != nil {
			return err
		}
		for _, id := range ids {
			buf, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("i%d", id)))
			if err != nil {
				return err
			}
			h, err := ParseIndexHeader(buf)
			if err != nil {
				fmt.Fprintf(w, "  i%d: %v\n", id, err)
				continue
			}
			fmt.Fprintf(w, "  i%d: mode=%s created=%d\n", id, h.Mode, h.Created)
			for off := IndexHeaderSize; off < len(buf); {
				e, n, err := ParseIndexEntry(buf[off:])
				if err != nil {
					fmt.Fprintf(w, "    @%d: %v (%d bytes left)\n", off, err, len(buf)-off)
					break
				}
				fmt.Fprintf(w, "    @%d key=%s data=d%d+%d length=%d flags=%d ts=%d crc=%08x parent=%d/%d\n",
					off, hex.EncodeToString(e.Key), e.DataID, e.DataOffset, e.Length, e.Flags,
					e.Timestamp, e.CRC, e.ParentID, e.ParentOffset)
				off += n
			}
		}
	}
	return nil
}
