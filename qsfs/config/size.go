package config

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strings"
)

// sizeUnits are the units ParseSize takes, lower-cased. K, M, G and T alone,
// or with i / iB, are powers of 1024 — "10G" is 10 GiB, as 0-db and quantumd
// users mean it; KB, MB, GB and TB are powers of 1000.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "ki": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mi": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gi": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "ti": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

var sizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$`)

// ParseSize reads a size in bytes: a TOML integer, or a string of a number
// (fractions allowed) and an optional unit — "10G", "512M", "1.5GiB",
// "2 TB", "1048576". The result is rounded down to whole bytes and must be
// at least 1.
func ParseSize(v any) (int64, error) {
	var n int64
	switch v := v.(type) {
	case int64:
		n = v
	case string:
		m := sizeRE.FindStringSubmatch(strings.TrimSpace(v))
		var mult int64
		var ok bool
		if m != nil {
			mult, ok = sizeUnits[strings.ToLower(m[2])]
		}
		if !ok {
			return 0, fmt.Errorf("%q is not a size: want bytes as an integer, or a string such as \"10G\", \"512M\", \"1.5GiB\" (K, M, G, T are powers of 1024; KB, MB, GB, TB of 1000)", v)
		}
		r, _ := new(big.Rat).SetString(m[1])
		r.Mul(r, new(big.Rat).SetInt64(mult))
		q := new(big.Int).Quo(r.Num(), r.Denom())
		if !q.IsInt64() || q.Int64() > math.MaxInt64/2 {
			return 0, fmt.Errorf("%q is too large", v)
		}
		n = q.Int64()
	default:
		return 0, fmt.Errorf("%v (a TOML %T) is not a size: want bytes as an integer, or a string such as \"10G\"", v, v)
	}
	if n < 1 {
		return 0, fmt.Errorf("%v is not a size: must be at least 1 byte", v)
	}
	return n, nil
}
