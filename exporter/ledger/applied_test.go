package ledger

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/exporter/event"
)

// Submit commits in the order of the calls and records the log position with the events: a
// store reopened resumes after the last committed message, and a message made only of
// duplicates still moves the position.
func TestSubmitRecordsTheLogPosition(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	first := decode(t, ev("1", "feature.used", t0, `{"tenant":"a","user":"u1","feature":"f"}`)+
		ev("2", "feature.used", t0, `{"tenant":"a","user":"u2","feature":"f"}`))
	second := decode(t, ev("3", "feature.used", t0.Add(time.Hour), `{"tenant":"b","user":"u1","feature":"f"}`))
	again := decode(t, ev("2", "feature.used", t0, `{"tenant":"a","user":"u2","feature":"f"}`))
	var pending []Pending
	for i, evs := range [][]event.Event{first, second, again} {
		p, err := s.Submit(ctx, evs, Mark{Log: "L", Seq: uint64(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, p)
	}
	want := []Result{{Accepted: 2}, {Accepted: 1}, {Duplicates: 1}}
	for i, p := range pending {
		res, err := p.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if res != want[i] {
			t.Errorf("message %d: %+v, want %+v", i+1, res, want[i])
		}
	}
	if got, err := s.Applied("L"); err != nil || got != 3 {
		t.Fatalf("Applied = %d, %v; want 3", got, err)
	}
	if got, err := s.Applied("other"); err != nil || got != 0 {
		t.Fatalf("Applied of an unknown log = %d, %v; want 0", got, err)
	}
	if _, err := s.Submit(ctx, again, Mark{}); err == nil {
		t.Error("Submit without a log name: no error")
	}
	s.Close()

	s = open(t, dir)
	defer s.Close()
	if got, err := s.Applied("L"); err != nil || got != 3 {
		t.Fatalf("after reopening, Applied = %d, %v; want 3", got, err)
	}
	p, err := s.Submit(ctx, decode(t, ev("4", "feature.used", t0, `{"tenant":"a","user":"u1","feature":"f"}`)), Mark{Log: "L", Seq: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Applied("L"); got != 4 {
		t.Fatalf("Applied = %d, want 4", got)
	}
}

// Two stores fed the same messages in the same order have the same digest, whatever their
// arrival numbers; one more event changes it.
func TestDigestOfReplicas(t *testing.T) {
	ctx := context.Background()
	msgs := [][]event.Event{
		decode(t, ev("1", "storage.measured", t0, `{"tenant":"a","storage_class":"hot","bytes":10}`)+
			ev("2", "storage.measured", t0, `{"tenant":"a","storage_class":"hot","bytes":20}`)+
			ev("3", "ai.tokens", t0, `{"tenant":"a","user":"u1","feature":"chat","model":"m","input_tokens":3,"output_tokens":4}`)),
		decode(t, ev("4", "document.created", t0.Add(time.Hour), `{"tenant":"b","user":"u1","document_id":"d","doc_type":"pdf","bytes":7}`)),
	}
	digest := func(extra bool) Digest {
		s := open(t, t.TempDir())
		defer s.Close()
		for i, m := range msgs {
			p, err := s.Submit(ctx, m, Mark{Log: "L", Seq: uint64(i + 1)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Wait(); err != nil {
				t.Fatal(err)
			}
		}
		if extra {
			if _, err := s.Commit(ctx, decode(t, ev("5", "feature.used", t0, `{"tenant":"a","user":"u1","feature":"f"}`))); err != nil {
				t.Fatal(err)
			}
		}
		d, err := s.Digest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	a, b, c := digest(false), digest(false), digest(true)
	if a.Ledger != b.Ledger {
		t.Errorf("same messages, different digests:\n%+v\n%+v", a, b)
	}
	if a.Events != 4 || a.Applied["L"] != 2 {
		t.Errorf("digest counts %d events at position %d, want 4 at 2", a.Events, a.Applied["L"])
	}
	if a.Ledger == c.Ledger {
		t.Error("one more event, same digest")
	}
	if a.Sections["totals"].Keys == 0 || a.Sections["rollups"].Keys == 0 {
		t.Errorf("sections without keys: %+v", a.Sections)
	}
}

// When a marked commit fails, the messages of its log queued behind it must not commit (their
// mark would skip the failed one) until the applier resumes right after the last committed one.
func TestFailedMarkHoldsTheLog(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	submit := func(seq uint64, id string) error {
		p, err := s.Submit(ctx, decode(t, ev(id, "feature.used", t0, `{"tenant":"a","user":"u1","feature":"f"}`)), Mark{Log: "L", Seq: seq})
		if err != nil {
			return err
		}
		_, err = p.Wait()
		return err
	}
	if err := submit(1, "1"); err != nil {
		t.Fatal(err)
	}
	// Message 2's commit failed (a disk error, say); the writer saw it.
	if err := s.exclusive(ctx, func() error {
		s.markFailed([]*commitReq{{mark: &Mark{Log: "L", Seq: 2}}})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := submit(3, "3"); err == nil {
		t.Fatal("message 3, queued behind the failed message 2, committed")
	}
	if got, _ := s.Applied("L"); got != 1 {
		t.Fatalf("Applied = %d after the refusal, want 1", got)
	}
	// Another log is not held.
	p, err := s.Submit(ctx, decode(t, ev("x", "feature.used", t0, `{"tenant":"a","user":"u1","feature":"f"}`)), Mark{Log: "M", Seq: 9})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(); err != nil {
		t.Fatalf("another log is held too: %v", err)
	}
	// The applier resumes at 2.
	for seq := uint64(2); seq <= 3; seq++ {
		if err := submit(seq, fmt.Sprint(seq)); err != nil {
			t.Fatalf("message %d after resuming: %v", seq, err)
		}
	}
	if got, _ := s.Applied("L"); got != 3 {
		t.Fatalf("Applied = %d, want 3", got)
	}
}
