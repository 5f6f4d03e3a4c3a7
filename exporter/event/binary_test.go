package event

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

const goodData = `{"tenant":"acme","user":"u1","feature":"chat","model":"m","input_tokens":10,"output_tokens":5}`

// binaryHeader is the binary-mode form of good: the same event, its attributes in ce-* headers.
func binaryHeader() http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", "e1")
	h.Set("ce-source", "svc")
	h.Set("ce-type", "ai.tokens")
	h.Set("ce-time", "2026-11-26T11:00:00Z")
	h.Set("User-Agent", "test") // not an attribute
	return h
}

// TestBinaryModeDecodesAsStructured: an event in binary mode decodes to what the same event in
// structured mode gives (with datacontenttype, which binary mode's Content-Type carries), stored
// form included.
func TestBinaryModeDecodesAsStructured(t *testing.T) {
	structured := strings.Replace(good, `"type"`, `"datacontenttype":"application/json","type"`, 1)
	want, err := dec().Decode("application/cloudevents+json", []byte(structured))
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8"} {
		h := binaryHeader()
		h.Set("Content-Type", ct)
		got, err := dec().DecodeHTTP(h, []byte(goodData))
		if err != nil {
			t.Fatalf("%s: %v", ct, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: binary mode gave\n%+v\nstructured mode\n%+v", ct, got, want)
		}
	}
	// Without Content-Type the data is still read as JSON, and the event has no datacontenttype.
	h := binaryHeader()
	h.Del("Content-Type")
	got, err := dec().DecodeHTTP(h, []byte(" "+goodData+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := dec().Decode("application/cloudevents+json", []byte(good))
	if !reflect.DeepEqual(got, plain) {
		t.Errorf("no Content-Type: got %+v, want %+v", got, plain)
	}
}

// TestBinaryModePercentDecoding: header values are percent-decoded (the binding's rule for
// non-ASCII bytes, space, '"' and '%'); '+' stays '+'.
func TestBinaryModePercentDecoding(t *testing.T) {
	h := binaryHeader()
	h.Set("ce-source", "caf%C3%A9%20svc+1%25")
	h.Set("ce-id", "%22quoted%22")
	evs, err := dec().DecodeHTTP(h, []byte(goodData))
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].Source != "café svc+1%" || evs[0].ID != `"quoted"` {
		t.Errorf("source %q, id %q", evs[0].Source, evs[0].ID)
	}
}

// TestBinaryModeExtensionsAndNanoseconds: extension attributes are kept with the event (its stored
// JSON holds them, percent-decoded) and a nanosecond time keeps its nanoseconds.
func TestBinaryModeExtensionsAndNanoseconds(t *testing.T) {
	h := binaryHeader()
	h.Set("ce-time", "2026-11-26T11:00:00.123456789Z")
	h.Set("ce-traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.Set("ce-region", "s%C3%A3o-paulo")
	evs, err := dec().DecodeHTTP(h, []byte(goodData))
	if err != nil {
		t.Fatal(err)
	}
	ev := evs[0]
	if want := time.Date(2026, 11, 26, 11, 0, 0, 123456789, time.UTC); !ev.Time.Equal(want) {
		t.Errorf("time %v, want %v", ev.Time, want)
	}
	stored, err := StoredJSON(ev.Raw, ev.Time)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(stored, &m); err != nil {
		t.Fatalf("stored %s: %v", stored, err)
	}
	if m["traceparent"] != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" || m["region"] != "são-paulo" ||
		m["time"] != "2026-11-26T11:00:00.123456789Z" || m["datacontenttype"] != "application/json" {
		t.Errorf("stored event %s", stored)
	}
	// The stored event decodes again to the same event.
	again, err := dec().DecodeStored(ev.Raw, ev.Time)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != ev.ID || again.Tenant != ev.Tenant || !reflect.DeepEqual(again.Quantities, ev.Quantities) {
		t.Errorf("stored event decodes to %+v, want %+v", again, ev)
	}
}

// TestBinaryModeRejects: binary mode gets the same validation as the other modes, with the same
// errors: every bad field of event 0 named, nothing returned.
func TestBinaryModeRejects(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(h http.Header)
		body   string
		field  string
		reason string
	}{
		{"no id", func(h http.Header) { h.Del("ce-id") }, goodData, "id", ReasonInvalid},
		{"empty source", func(h http.Header) { h.Set("ce-source", "") }, goodData, "source", ReasonInvalid},
		{"specversion", func(h http.Header) { h.Set("ce-specversion", "0.3") }, goodData, "specversion", ReasonInvalid},
		{"unknown type", func(h http.Header) { h.Set("ce-type", "ai.unknown") }, goodData, "type", ReasonInvalid},
		{"bad time", func(h http.Header) { h.Set("ce-time", "yesterday") }, goodData, "time", ReasonInvalid},
		{"too old", func(h http.Header) { h.Set("ce-time", "2026-10-01T00:00:00Z") }, goodData, "time", ReasonTooOld},
		{"too new", func(h http.Header) { h.Set("ce-time", "2026-11-26T12:06:00Z") }, goodData, "time", ReasonTooNew},
		{"bad tenant", nil, strings.Replace(goodData, `"acme"`, `"ac me"`, 1), "data.tenant", ReasonInvalid},
		{"negative", nil, strings.Replace(goodData, `10`, `-10`, 1), "data.input_tokens", ReasonInvalid},
		{"missing quantity", nil, strings.Replace(goodData, `,"output_tokens":5`, ``, 1), "data.output_tokens", ReasonInvalid},
		{"data not object", nil, `[1,2]`, "data", ReasonInvalid},
		{"bad percent-encoding", func(h http.Header) { h.Set("ce-source", "svc%zz") }, goodData, "source", ReasonInvalid},
		{"percent-encoded non-UTF-8", func(h http.Header) { h.Set("ce-id", "e%FF") }, goodData, "id", ReasonInvalid},
		{"repeated header", func(h http.Header) { h.Add("ce-id", "e2") }, goodData, "id", ReasonInvalid},
		{"xml data", func(h http.Header) { h.Set("Content-Type", "application/xml") }, goodData, "datacontenttype", ReasonInvalid},
		{"ce-datacontenttype", func(h http.Header) { h.Set("ce-datacontenttype", "application/json") }, goodData, "datacontenttype", ReasonInvalid},
		{"bad extension name", func(h http.Header) { h.Set("ce-my_ext", "x") }, goodData, "my_ext", ReasonInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := binaryHeader()
			if c.edit != nil {
				c.edit(h)
			}
			evs, err := dec().DecodeHTTP(h, []byte(c.body))
			var ee *Error
			if !errors.As(err, &ee) || evs != nil {
				t.Fatalf("err = %v, events = %d; want a validation error", err, len(evs))
			}
			found := false
			for _, fe := range ee.Errors {
				found = found || fe.Index == 0 && fe.Field == c.field
			}
			if !found {
				t.Errorf("errors %+v do not name field %s", ee.Errors, c.field)
			}
			if ee.Reasons[c.reason] != 1 {
				t.Errorf("reasons = %v, want %s", ee.Reasons, c.reason)
			}
		})
	}
	// A body that is not JSON at all is malformed, as in structured mode.
	_, err := dec().DecodeHTTP(binaryHeader(), []byte(`{"tenant":`))
	var ee *Error
	if !errors.As(err, &ee) || ee.Reason != ReasonMalformed {
		t.Errorf("broken body: %v", err)
	}
}

// TestContentModeSelection: the structured and batched media types win over ce-* headers, as the
// binding says; without ce-specversion a request is not binary mode.
func TestContentModeSelection(t *testing.T) {
	h := binaryHeader()
	h.Set("ce-id", "from-header")
	for _, c := range []struct{ ct, body string }{
		{"application/cloudevents+json", good},
		{"application/cloudevents+json; charset=utf-8", good},
		{"application/cloudevents-batch+json", "[" + good + "]"},
	} {
		h.Set("Content-Type", c.ct)
		evs, err := dec().DecodeHTTP(h, []byte(c.body))
		if err != nil || len(evs) != 1 || evs[0].ID != "e1" {
			t.Errorf("%s: %v, %+v; want the body's event", c.ct, err, evs)
		}
	}
	plain := http.Header{"Content-Type": {"application/json"}}
	if evs, err := dec().DecodeHTTP(plain, []byte("["+good+"]")); err != nil || len(evs) != 1 {
		t.Errorf("JSON array without ce- headers: %v", err)
	}
}

// BenchmarkContentModes measures one event sent in each CloudEvents content mode, in the same run:
// binary (attributes in ce-* headers, as the SDKs send by default) against structured (the whole
// event as the body). The ce-* header parsing must not cost more than 20 % per event.
func BenchmarkContentModes(b *testing.B) {
	d := &Decoder{Now: func() time.Time { return now }}
	structured := []byte(strings.Replace(good, `"type"`, `"datacontenttype":"application/json","type"`, 1))
	sh := http.Header{"Content-Type": {"application/cloudevents+json"}}
	bh := binaryHeader()
	bh.Set("Accept-Encoding", "gzip") // what a Go client adds to every request
	data := []byte(goodData)
	b.Run("structured", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.DecodeHTTP(sh, structured); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("binary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.DecodeHTTP(bh, data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("binary-extension", func(b *testing.B) {
		h := bh.Clone()
		h.Set("ce-traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.DecodeHTTP(h, data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
