package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// parseSize reads chunk_size: absent (0), an integer number of bytes, or a
// string of a number and an IEC unit: "4194304", "4 MiB", "512KiB", "1GiB".
func parseSize(v any) (int, error) {
	switch v := v.(type) {
	case nil:
		return 0, nil
	case int64:
		if v < 1 || v > math.MaxInt32 {
			return 0, fmt.Errorf("%d bytes out of range", v)
		}
		return int(v), nil
	case string:
		s := strings.TrimSpace(v)
		num := strings.TrimRight(s, "BKMGi ")
		unit := strings.TrimSpace(s[len(num):])
		mult, ok := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit]
		n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
		if !ok || err != nil || n < 1 || n > math.MaxInt32/mult {
			return 0, fmt.Errorf("%q is not a size: want bytes as an integer, or a string like \"4 MiB\" (units B, KiB, MiB, GiB)", v)
		}
		return int(n * mult), nil
	}
	return 0, fmt.Errorf("%v (%T) is not a size: want bytes as an integer, or a string like \"4 MiB\"", v, v)
}
