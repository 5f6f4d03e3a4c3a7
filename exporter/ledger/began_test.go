package ledger

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestBegan: a new store's history begins when it was created, and reaches back to its earliest
// event (a backfill); the creation stamp survives reopening.
func TestBegan(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	before := time.Now()
	s := open(t, dir)
	began, err := s.Began(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if began.Before(before.Add(-time.Second)) || began.After(time.Now()) {
		t.Fatalf("an empty store began at %s, want about now", began)
	}
	created, _ := s.Created()
	if _, err := s.Commit(ctx, decode(t, ev("1", "user.login", t0, `{"tenant":"acme","user":"u"}`))); err != nil {
		t.Fatal(err)
	}
	if began, err = s.Began(ctx); err != nil || !began.Equal(t0) {
		t.Fatalf("after an event of %s the history began at %s (%v), want the event's time", t0, began, err)
	}
	s.Close()
	s = open(t, dir)
	defer s.Close()
	if again, _ := s.Created(); !again.Equal(created) {
		t.Fatalf("reopening moved the creation time from %s to %s", created, again)
	}
}

// TestVerifyReportsProgress: verification says what it does and how far it got, so that a long
// run over millions of events is not silent.
func TestVerifyReportsProgress(t *testing.T) {
	defer func(d time.Duration) { verifyProgressEvery = d }(verifyProgressEvery)
	verifyProgressEvery = 0 // every event
	var logs bytes.Buffer
	s, err := Open(context.Background(), Options{Path: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	body := ev("1", "user.login", t0, `{"tenant":"acme","user":"u"}`) + ev("2", "user.login", t0.Add(time.Hour), `{"tenant":"acme","user":"v"}`)
	if _, err := s.Commit(context.Background(), decode(t, body)); err != nil {
		t.Fatal(err)
	}
	if diffs, err := s.Verify(context.Background()); err != nil || len(diffs) > 0 {
		t.Fatalf("verify: %v %v", diffs, err)
	}
	for _, want := range []string{"recomputing every rollup", "events_read=1 ", "events_read=2 ", "raw events read"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, logs.String())
		}
	}
}
