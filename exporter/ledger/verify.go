package ledger

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// verifyProgressEvery is how often Verify logs how far it got.
var verifyProgressEvery = 5 * time.Second

// Verify recomputes every rollup, total and month total from the raw events, in memory, and
// compares them with what the store holds. It returns the differences (empty when the ledger
// is consistent). Run it offline (usagectl ledger verify) or in tests.
func (s *Store) Verify(ctx context.Context) (diffs []string, err error) {
	defer func() { err = damaged(s.opts.Path, err) }() // name the damaged file, if that is what failed
	defer recoverInto(&err, "verifying the ledger")
	if err := s.Flush(ctx); err != nil {
		return nil, err
	}
	if archived, err := s.ArchivedMonths(ctx, ClassRawEvents); err != nil {
		return nil, err
	} else if len(archived) > 0 {
		return nil, fmt.Errorf("raw events of %d month(s) are archived (first %s): restore them (usagectl archive restore) before verifying", len(archived), archived[0].Format("2006-01"))
	}
	ackedBefore, err := s.getUint(keyAcked)
	if err != nil {
		return nil, err
	}
	want := map[string]meter.State{}
	wantSets := map[string]bool{}
	a := &arena{} // the keys live on in want: chunks shared by many events, not one each
	// Reading every raw event takes about 10 s per million: say so, and how far it got.
	s.log.Info("verifying ledger: recomputing every rollup and total from the raw events")
	var raw uint64
	last := time.Now()
	err = s.forEachRaw(ctx, func(key, _ []byte, ev *event.Event) error {
		raw++
		if time.Since(last) >= verifyProgressEvery {
			s.log.Info("verifying ledger", "events_read", raw, "at_event_time", ev.Time.UTC().Format(time.RFC3339))
			last = time.Now()
		}
		p := s.prepare(ev, a)
		for _, o := range p.ops {
			if o.kind == opUnique {
				wantSets[o.key] = true
				continue
			}
			if st, ok := want[o.key]; ok {
				st.Merge(o.state)
				want[o.key] = st
			} else {
				want[o.key] = o.state
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("verifying ledger: raw events read, comparing with the stored rollups and totals", "events_read", raw)
	// Every event accepted is stored raw: fewer raw events than acknowledged means events lost.
	if acked, err := s.getUint(keyAcked); err != nil {
		return nil, err
	} else if acked != ackedBefore {
		return nil, errors.New("events were committed while verifying: stop the exporter and verify offline (usagectl ledger verify)")
	} else if raw < acked {
		// More raw events than counted is no loss: a store migrated to schema 2 while months were
		// archived counted only the events then present.
		diffs = append(diffs, fmt.Sprintf("acknowledged events missing: %d accepted, %d stored raw (%d missing)", acked, raw, acked-raw))
	}
	for _, p := range []string{pRollup, pTotal, pPeriod, pActive, pUnique} {
		if p == pAdmit {
			continue
		}
		err := s.scan(ctx, []byte(p), func(k, v []byte) error {
			key := string(k)
			if p == pUnique {
				if !wantSets[key] {
					diffs = append(diffs, fmt.Sprintf("unexpected %q", key))
				}
				delete(wantSets, key)
				return nil
			}
			got, err := meter.Decode(v)
			if err != nil {
				return err
			}
			w, ok := want[key]
			switch {
			case !ok:
				diffs = append(diffs, fmt.Sprintf("unexpected %q = %d", key, got.Value))
			case w.Value != got.Value:
				diffs = append(diffs, fmt.Sprintf("%q = %d, recomputed %d", key, got.Value, w.Value))
			}
			delete(want, key)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for k, w := range want {
		if !strings.HasPrefix(k, pAdmit) {
			diffs = append(diffs, fmt.Sprintf("missing %q = %d", k, w.Value))
		}
	}
	for k := range wantSets {
		diffs = append(diffs, fmt.Sprintf("missing %q", k))
	}
	sort.Strings(diffs)
	return diffs, nil
}
