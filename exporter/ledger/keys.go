package ledger

import (
	"encoding/binary"
	"hash/maphash"
	"strings"
	"time"
)

// Key prefixes: see docs/architecture.md.
const (
	pMeta    = "m/"
	pEvent   = "e/"
	pDedupe  = "d/"
	pRollup  = "r/"
	pUnique  = "u/"
	pTotal   = "t/"
	pPeriod  = "p/"
	pActive  = "a/"
	pAdmit   = "s/"
	sep      = "\x00"
	hourSecs = 3600
)

// hourOf is the rollup bucket of t: hours since the Unix epoch.
func hourOf(t time.Time) uint32 { return uint32(t.Unix() / hourSecs) }

// monthOf numbers calendar months (UTC): year*12 + month-1.
func monthOf(t time.Time) uint32 {
	t = t.UTC()
	return uint32(t.Year()*12 + int(t.Month()) - 1)
}

func monthStart(m uint32) time.Time {
	return time.Date(int(m/12), time.Month(m%12+1), 1, 0, 0, 0, 0, time.UTC)
}

func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

// cellPrefix is r/<meter>\0<tenant>\0 (or u/...).
func cellPrefix(prefix, meter, tenant string) []byte {
	b := make([]byte, 0, len(prefix)+len(meter)+len(tenant)+2+4)
	b = append(b, prefix...)
	b = append(b, meter...)
	b = append(b, 0)
	b = append(b, tenant...)
	return append(b, 0)
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// splitZero splits a key tail into its NUL-terminated parts.
func splitZero(b []byte) []string {
	s := string(b)
	s = strings.TrimSuffix(s, sep)
	if s == "" {
		return nil
	}
	return strings.Split(s, sep)
}

// keyHash names a derived key inside the write path's in-memory maps (pending changes, mirror
// series and month totals). Those maps hold hundreds of thousands of keys, and looking one up by
// its string compares the keys themselves, a cache miss into memory the writer has not touched
// for a while; a 16-byte hash is compared where the map stores it. It is computed by the request
// goroutines (prepare), not by the single writer. Two 64-bit hashes with seeds drawn at start-up:
// distinct keys of one process collide with probability about n²/2¹²⁹ (10⁻²⁶ for 10⁸ keys), the
// same standard as the 128-bit dedupe hash, and nobody outside the process knows the seeds.
type keyHash [2]uint64

var keyHashSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func hashKey(k string) keyHash {
	return keyHash{maphash.String(keyHashSeeds[0], k), maphash.String(keyHashSeeds[1], k)}
}
