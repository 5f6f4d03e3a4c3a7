package invoice

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Key space, all under b/ (docs/architecture.md gives b/ to billing):
//
//	b/inv/<number>                         finalized invoice (JSON)
//	b/draft/<period>\x00<tenant>           draft invoice (JSON)
//	b/pinv/<period>\x00<tenant>\x00<number> index: a tenant's finalized invoices of a period
//	b/tinv/<tenant>\x00<number>            index: a tenant's finalized invoices
//	b/cn/<number>                          credit note (JSON); b/tcn/<tenant>\x00<number> index
//	b/pay/<id>                             payment (JSON); b/tpay/<tenant>\x00<id> index
//	b/credit/<tenant>                      available prepaid credit, int64 BE minor units
//	b/sub/<tenant>\x00<unix nanos BE>      plan from that instant (subscription)
//	b/closed/<period>                      the period's invoice run was finalized
//	b/wh/<provider>\x00<event id>          a processed payment-provider webhook event
//	b/seq/<name>                           last number issued (uint64 BE)
//	b/coll/<number>                        collection through a payment provider (JSON)
//	b/collq/<number>                       collection queue: finalized, not yet sent
//	b/cust/<provider>\x00<tenant>           the provider's customer id (JSON)
//	b/open/<number>                        index: finalized invoices owing something, due time (int64 BE ns)
//	b/dun/<number>                         dunning record (JSON)
//	b/hold/<tenant>\x00<number>             dunning hold: quota admission denies the tenant (value: reason)
//	b/grant/<tenant>\x00<id>               credit grant (JSON)
//	b/redeem/<tenant>\x00<code>             a redeemed coupon (JSON); b/couponn/<code> redemptions (int64 BE)
//	b/pref/<provider>\x00<provider invoice id> our invoice number (index of collections)
//	b/meta/<name>                          one-off markers (open_index: the open index was built)
const (
	pInv     = "b/inv/"
	pDraft   = "b/draft/"
	pPInv    = "b/pinv/"
	pTInv    = "b/tinv/"
	pCN      = "b/cn/"
	pTCN     = "b/tcn/"
	pPay     = "b/pay/"
	pTPay    = "b/tpay/"
	pCredit  = "b/credit/"
	pSub     = "b/sub/"
	pClosed  = "b/closed/"
	pHook    = "b/wh/"
	pSeq     = "b/seq/"
	pColl    = "b/coll/"
	pCollQ   = "b/collq/"
	pCust    = "b/cust/"
	pOpen    = "b/open/"
	pDun     = "b/dun/"
	pHold    = "b/hold/"
	pMeta    = "b/meta/"
	pGrant   = "b/grant/"
	pRedeem  = "b/redeem/"
	pCouponN = "b/couponn/"
	pPRef    = "b/pref/"
)

func key(parts ...string) []byte {
	var b bytes.Buffer
	for i, p := range parts {
		if i > 1 {
			b.WriteByte(0)
		}
		b.WriteString(p)
	}
	return b.Bytes()
}

func get(db *pebble.DB, k []byte) ([]byte, bool, error) {
	v, closer, err := db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %q: %w", k, err)
	}
	out := bytes.Clone(v)
	if err := closer.Close(); err != nil {
		return nil, false, fmt.Errorf("read %q: %w", k, err)
	}
	return out, true, nil
}

func getJSON(db *pebble.DB, k []byte, into any) (bool, error) {
	v, ok, err := get(db, k)
	if err != nil || !ok {
		return ok, err
	}
	if err := json.Unmarshal(v, into); err != nil {
		return false, fmt.Errorf("decode %q: %w", k, err)
	}
	return true, nil
}

func getInt(db *pebble.DB, k []byte) (int64, error) {
	v, ok, err := get(db, k)
	if err != nil || !ok {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("read %q: want 8 bytes, got %d", k, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

func putInt(b *pebble.Batch, k []byte, v int64) error {
	return b.Set(k, binary.BigEndian.AppendUint64(nil, uint64(v)), nil)
}

func putJSON(b *pebble.Batch, k []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %q: %w", k, err)
	}
	return b.Set(k, data, nil)
}

// scan calls fn for every key with the prefix, in order.
func scan(db *pebble.DB, prefix []byte, fn func(k, v []byte) error) error {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("scan %q: %w", prefix, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			_ = it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("scan %q: %w", prefix, err)
	}
	return nil
}

func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// seq hands out gap-free numbers: the caller holds the service's write lock, reads the last
// number, and writes number+n in the same batch as the documents that use the numbers, so a
// number is consumed exactly when its document is durably stored.
type seq struct {
	name string
}

func (s seq) last(db *pebble.DB) (int64, error) { return getInt(db, []byte(pSeq+s.name)) }

func (s seq) set(b *pebble.Batch, v int64) error { return putInt(b, []byte(pSeq+s.name), v) }

func jsonUnmarshal(v []byte, into any) error {
	if err := json.Unmarshal(v, into); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}
