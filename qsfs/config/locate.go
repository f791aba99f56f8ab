package config

import (
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// keyLines maps each key written in a TOML document to its 1-based line,
// under the names the error messages use: dotted, with [i] for the i-th
// element of an array of tables ("groups[1].backends[0].address"). Table
// headers are included ("meta.config", "groups[1]"). Keys inside inline
// tables and arrays are not; lineOf falls back to the enclosing key.
//
// The strict TOML decoder knows the line of an unknown key, but validation of
// a known key happens after decoding, when positions are gone; this index
// gives those errors their line.
type keyLines map[string]int

// indexKeys parses data into a keyLines. A document the parser rejects gives
// what was indexed up to the error (the decoder reports the syntax error).
func indexKeys(data []byte) keyLines {
	lines := keyLines{}
	arrays := map[string]int{} // indexed path of an array of tables -> elements so far
	table := ""
	var p unstable.Parser
	p.Reset(data)
	for p.NextExpression() {
		e := p.Expression()
		parts, first := keyParts(e)
		if len(parts) == 0 {
			continue
		}
		line := p.Shape(first.Raw).Start.Line
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			cur := ""
			for i, part := range parts {
				cur = join(cur, part)
				last := i == len(parts)-1
				switch {
				case last && e.Kind == unstable.ArrayTable:
					n := arrays[cur]
					arrays[cur] = n + 1
					cur = fmt.Sprintf("%s[%d]", cur, n)
				case arrays[cur] > 0:
					cur = fmt.Sprintf("%s[%d]", cur, arrays[cur]-1)
				}
				if _, seen := lines[cur]; !seen || last {
					lines[cur] = line
				}
			}
			table = cur
		case unstable.KeyValue:
			cur := table
			for _, part := range parts {
				cur = join(cur, part)
				if _, seen := lines[cur]; !seen {
					lines[cur] = line
				}
			}
		}
	}
	return lines
}

// keyParts returns the parts of an expression's key and its first key node.
func keyParts(e *unstable.Node) ([]string, *unstable.Node) {
	var parts []string
	var first *unstable.Node
	it := e.Key()
	for it.Next() {
		n := it.Node()
		if first == nil {
			first = n
		}
		parts = append(parts, string(n.Data))
	}
	return parts, first
}

func join(prefix, part string) string {
	if prefix == "" {
		return part
	}
	return prefix + "." + part
}

// has reports whether key is written in the document.
func (l keyLines) has(key string) bool {
	_, ok := l[key]
	return ok
}

// lineOf returns the line of key, or of the nearest enclosing key written in
// the document (the table of a missing key, the array of an element given
// inline); 0 when none is.
func (l keyLines) lineOf(key string) int {
	for key != "" {
		if n, ok := l[key]; ok {
			return n
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}
