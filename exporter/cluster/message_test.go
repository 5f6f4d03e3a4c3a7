package cluster

import (
	"context"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/exporter/event"
)

func decodeBody(t *testing.T, body string) []event.Event {
	t.Helper()
	evs, err := (&event.Decoder{}).Decode("application/json", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// A message carries a request's events exactly: the applier decodes what ingest validated,
// including events kept as JSON (an extension attribute) and events without a time.
func TestMessageRoundTrip(t *testing.T) {
	at := time.Now().UTC().Add(-time.Minute).Truncate(time.Millisecond)
	evs := decodeBody(t, `[
		{"specversion":"1.0","id":"1","source":"s","type":"ai.tokens","time":"`+at.Format(time.RFC3339Nano)+`","data":{"tenant":"a","user":"u","feature":"f","model":"m","input_tokens":3,"output_tokens":4}},
		{"specversion":"1.0","id":"2","source":"s","type":"feature.used","ext":"x","data":{"tenant":"b","user":"u","feature":"f"}}]`)
	b := encodeEvents(evs)
	got, err := decodeEvents(&event.Decoder{}, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(evs) {
		t.Fatalf("%d events, want %d", len(got), len(evs))
	}
	for i := range evs {
		if !got[i].Time.Equal(evs[i].Time) {
			t.Errorf("event %d: time %v, want %v", i, got[i].Time, evs[i].Time)
		}
		got[i].Time = evs[i].Time
		if !reflect.DeepEqual(got[i], evs[i]) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i], evs[i])
		}
	}
	// A replay long after the late-event window still applies: the time was judged at ingest.
	old := decodeBody(t, `{"specversion":"1.0","id":"3","source":"s","type":"feature.used","data":{"tenant":"a","user":"u","feature":"f"}}`)
	old[0].Time = old[0].Time.Add(-400 * 24 * time.Hour)
	if _, err := decodeEvents(&event.Decoder{}, encodeEvents(old)); err != nil {
		t.Errorf("replaying an event older than the late window: %v", err)
	}
	for n := range len(b) {
		if _, err := decodeEvents(&event.Decoder{}, b[:n]); err == nil {
			t.Errorf("a message cut at %d of %d bytes decodes", n, len(b))
		}
	}
	if _, err := decodeEvents(&event.Decoder{}, append(b, 0)); err == nil {
		t.Error("a message with a trailing byte decodes")
	}
}

// The message id names the events by (source, id): the same request has the same id, another
// request another one.
func TestMsgID(t *testing.T) {
	a := decodeBody(t, `[{"specversion":"1.0","id":"1","source":"s","type":"feature.used","data":{"tenant":"a","user":"u","feature":"f"}}]`)
	b := decodeBody(t, `[{"specversion":"1.0","id":"1","source":"s","type":"feature.used","data":{"tenant":"a","user":"u","feature":"f"}}]`)
	c := decodeBody(t, `[{"specversion":"1.0","id":"x","source":"y","type":"feature.used","data":{"tenant":"a","user":"u","feature":"f"}}]`)
	if msgID(a) != msgID(b) {
		t.Error("the same request has two ids")
	}
	c[0].Source, c[0].ID = "s1", "" // no ambiguity between where source ends and id starts
	if msgID(a) == msgID(c) {
		t.Error("different events share an id")
	}
}

func TestMinSeq(t *testing.T) {
	for _, tc := range []struct {
		target, header string
		want           uint64
		bad            bool
	}{
		{"/v1/usage", "", 0, false},
		{"/v1/usage?min_seq=7", "", 7, false},
		{"/v1/usage", "9", 9, false},
		{"/v1/usage?min_seq=7", "9", 9, false},
		{"/v1/usage?min_seq=-1", "", 0, true},
		{"/v1/usage", "x", 0, true},
	} {
		r := httptest.NewRequest("GET", tc.target, nil)
		if tc.header != "" {
			r.Header.Set(HeaderMinSeq, tc.header)
		}
		got, err := minSeq(r)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("%s %q: %d, %v; want %d (error %v)", tc.target, tc.header, got, err, tc.want, tc.bad)
		}
	}
}

func TestWatermark(t *testing.T) {
	var w watermark
	w.init()
	done := make(chan error)
	go func() { done <- w.wait(context.Background(), 5) }()
	w.advance(3)
	w.advance(2) // never backwards
	if w.get() != 3 {
		t.Fatalf("watermark %d, want 3", w.get())
	}
	w.advance(5)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.wait(ctx, 6); err == nil {
		t.Error("waiting for a position not reached, with a cancelled context: no error")
	}
}
