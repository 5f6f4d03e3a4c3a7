package invoice

import (
	"context"
	"errors"
	"testing"
)

func TestArchiveSettledPeriodKeepsBalancesAndStatements(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, testCatalogue, map[string]string{"acme": "pro"})
	f.usage.Add("acme", "calls", day(10, 5), 600) // 15.00
	f.setNow(day(10, 20))
	if _, err := f.svc.RecordPayment(ctx, PaymentInput{Tenant: "acme", Amount: 400, Method: "card"}); err != nil { // prepayment
		t.Fatal(err)
	}
	f.setNow(day(11, 5))
	if _, err := f.svc.Run(ctx, oct); err != nil {
		t.Fatal(err)
	}
	inv, _ := f.svc.Get(ctx, "INV-00000001")
	collect := func() ([][]byte, [][]byte, error) {
		var ks, vs [][]byte
		_, err := f.svc.ExportPeriod(ctx, oct, func(k, v []byte) error { ks, vs = append(ks, k), append(vs, v); return nil })
		return ks, vs, err
	}
	// Money is still owed: the period cannot be archived.
	if _, _, err := collect(); !errors.Is(err, ErrUnsettled) {
		t.Fatalf("archiving an unpaid period: %v", err)
	}
	if _, err := f.svc.RecordPayment(ctx, PaymentInput{Invoice: inv.Number, Amount: 600}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.IssueCreditNote(ctx, inv.Number, 300, "goodwill"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.RecordPayment(ctx, PaymentInput{Invoice: inv.Number, Amount: 500}); err != nil { // 300 over: credit
		t.Fatal(err)
	}
	balBefore, _ := f.svc.Balance(ctx, "acme")
	stBefore, _ := f.svc.Statement(ctx, "acme")
	ks, vs, err := collect()
	if err != nil {
		t.Fatal(err)
	}
	// Invoice + two indexes, credit note + index, two payments + indexes, the closing marker.
	if len(ks) != 3+2+4+1 {
		t.Fatalf("%d documents exported", len(ks))
	}
	iter := func() func() ([]byte, error) {
		i := 0
		return func() ([]byte, error) {
			if i == len(ks) {
				return nil, ErrArchiveEnd
			}
			i++
			return ks[i-1], nil
		}
	}
	// An archive that lacks a document deletes nothing.
	short := ks[:len(ks)-1]
	j := 0
	if _, err := f.svc.DeleteArchived(ctx, oct, func() ([]byte, error) {
		if j == len(short) {
			return nil, ErrArchiveEnd
		}
		j++
		return short[j-1], nil
	}); err == nil {
		t.Fatal("an incomplete archive was accepted")
	}
	if n, err := f.svc.DeleteArchived(ctx, oct, iter()); err != nil || n != len(ks) {
		t.Fatalf("delete: %d %v", n, err)
	}
	if _, err := f.svc.Get(ctx, inv.Number); !errors.Is(err, ErrNotFound) {
		t.Errorf("the archived invoice is still there: %v", err)
	}
	bal, _ := f.svc.Balance(ctx, "acme")
	st, _ := f.svc.Statement(ctx, "acme")
	if bal != balBefore {
		t.Errorf("balance changed: %+v → %+v", balBefore, bal)
	}
	last := st.Entries[len(st.Entries)-1].Balance
	if last != bal.Balance || last != stBefore.Entries[len(stBefore.Entries)-1].Balance || st.Entries[0].Kind != "opening" {
		t.Errorf("statement after archiving ends at %d (balance %d), first entry %+v", last, bal.Balance, st.Entries[0])
	}

	// Restoring brings every document back and the opening balance to nothing.
	i := 0
	if _, err := f.svc.RestorePeriod(ctx, oct, func() ([]byte, []byte, error) {
		if i == len(ks) {
			return nil, nil, ErrArchiveEnd
		}
		i++
		return ks[i-1], vs[i-1], nil
	}); err != nil {
		t.Fatal(err)
	}
	st, _ = f.svc.Statement(ctx, "acme")
	if len(st.Entries) != len(stBefore.Entries) || st.Entries[0].Kind == "opening" {
		t.Fatalf("statement after restoring: %+v", st.Entries)
	}
	for k := range st.Entries {
		if st.Entries[k] != stBefore.Entries[k] {
			t.Errorf("entry %d differs: %+v vs %+v", k, st.Entries[k], stBefore.Entries[k])
		}
	}
}
