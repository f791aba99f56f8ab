package auth

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Password attempts: a burst of limitBurst, then one per limitEvery, per
// client IP and per user name (so neither many names from one address nor
// one name from many addresses gets more). A successful attempt gives its
// token back: only failures count.
const (
	limitBurst = 5
	limitEvery = 10 * time.Second
	// limitKeys bounds the limiters kept; past it, those at full burst
	// (they hold nothing to remember) are dropped.
	limitKeys = 10000
)

type limiter struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*rate.Limiter
}

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now, m: map[string]*rate.Limiter{}}
}

func (l *limiter) get(key string, now time.Time) *rate.Limiter {
	if lim := l.m[key]; lim != nil {
		return lim
	}
	if len(l.m) >= limitKeys {
		for k, lim := range l.m {
			if lim.TokensAt(now) >= limitBurst {
				delete(l.m, k)
			}
		}
	}
	lim := rate.NewLimiter(rate.Every(limitEvery), limitBurst)
	l.m[key] = lim
	return lim
}

// attempt takes one token from the limiter of each key. When one has none,
// it takes nothing and returns how long until one has. Otherwise it
// returns done, to be called with the attempt's outcome: a success gives
// the tokens back.
func (l *limiter) attempt(keys ...string) (retry time.Duration, done func(ok bool)) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	rs := make([]*rate.Reservation, 0, len(keys))
	for _, k := range keys {
		r := l.get(k, now).ReserveN(now, 1)
		if d := r.DelayFrom(now); d > retry {
			retry = d
		}
		rs = append(rs, r)
	}
	if retry > 0 {
		for _, r := range rs {
			r.CancelAt(now)
		}
		return retry, nil
	}
	return 0, func(ok bool) {
		if !ok {
			return
		}
		// Cancelled at the reservation's own time: rate.Reservation
		// restores nothing when cancelled at a later time.
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, r := range rs {
			r.CancelAt(now)
		}
	}
}

// writeRateLimited answers 429 with Retry-After in whole seconds.
func writeRateLimited(w http.ResponseWriter, retry time.Duration, jsonBody bool) {
	secs := int(math.Ceil(retry.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	msg := "too many failed attempts: try again in " + strconv.Itoa(secs) + " s"
	if jsonBody {
		writeError(w, http.StatusTooManyRequests, msg)
		return
	}
	http.Error(w, msg, http.StatusTooManyRequests)
}
