package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
)

// DigestSection is one part of the key space that a digest covers.
type DigestSection struct {
	Name, Prefix string
}

// DigestSections are the parts of the ledger that every replica of a cluster derives from the
// same log, so that they must hold them byte for byte: totals, month totals, rollups, unique
// presence, last activity, admitted series, and billing (invoices, payments, credit notes). Raw
// events and dedupe keys are left out: their keys carry an arrival number local to a replica.
var DigestSections = []DigestSection{
	{"totals", pTotal},
	{"periods", pPeriod},
	{"rollups", pRollup},
	{"presence", pUnique},
	{"activity", pActive},
	{"series", pAdmit},
	{"billing", "b/"},
}

// Digest sums up a ledger so that two replicas can be compared without shipping their data.
type Digest struct {
	// Ledger hashes every section of DigestSections, in order.
	Ledger string `json:"ledger"`
	// Sections are each section's hash and number of keys.
	Sections map[string]SectionDigest `json:"sections"`
	// AuditHead hashes the head of the audit chain (x/head).
	AuditHead string `json:"audit_head"`
	// Events counts the raw events held.
	Events int `json:"events"`
	// Applied are the positions of the logs applied (cluster mode).
	Applied map[string]uint64 `json:"applied,omitempty"`
}

// SectionDigest is one section's part of a Digest.
type SectionDigest struct {
	SHA256 string `json:"sha256"`
	Keys   int    `json:"keys"`
}

// Digest flushes derived usage and hashes every key and value of the digest's sections.
func (s *Store) Digest(ctx context.Context) (Digest, error) {
	if err := s.Flush(ctx); err != nil {
		return Digest{}, err
	}
	d := Digest{Sections: map[string]SectionDigest{}}
	all := sha256.New()
	for _, sec := range DigestSections {
		h := sha256.New()
		n := 0
		err := s.scan(ctx, []byte(sec.Prefix), func(k, v []byte) error {
			n++
			writeKV(h, k, v)
			return nil
		})
		if err != nil {
			return Digest{}, fmt.Errorf("digest of %s: %w", sec.Name, err)
		}
		sum := h.Sum(nil)
		d.Sections[sec.Name] = SectionDigest{SHA256: hex.EncodeToString(sum), Keys: n}
		all.Write([]byte(sec.Name))
		all.Write(sum)
	}
	d.Ledger = hex.EncodeToString(all.Sum(nil))
	head := sha256.New()
	if err := s.scan(ctx, []byte("x/head"), func(k, v []byte) error { writeKV(head, k, v); return nil }); err != nil {
		return Digest{}, fmt.Errorf("digest of the audit head: %w", err)
	}
	d.AuditHead = hex.EncodeToString(head.Sum(nil))
	if err := s.scanKeys(ctx, []byte(pEvent), func([]byte) { d.Events++ }); err != nil {
		return Digest{}, fmt.Errorf("counting raw events: %w", err)
	}
	applied, err := s.AppliedLogs(ctx)
	if err != nil {
		return Digest{}, err
	}
	if len(applied) > 0 {
		d.Applied = applied
	}
	return d, nil
}

// writeKV writes a key and its value, each length-prefixed, so that no two key spaces hash alike.
func writeKV(h hash.Hash, k, v []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(k)))
	h.Write(n[:])
	h.Write(k)
	binary.BigEndian.PutUint64(n[:], uint64(len(v)))
	h.Write(n[:])
	h.Write(v)
}
