package ledger

import (
	"encoding/binary"
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
