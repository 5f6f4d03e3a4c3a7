package event

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fastjson"
)

// general decodes one event by the general path only, as decodeLines would without the fast path.
func general(d *Decoder, line []byte) (Event, *Error) {
	var ev Event
	var verr Error
	var p fastjson.Parser
	v, err := p.ParseBytes(line)
	if err != nil {
		verr.add(0, "", ReasonMalformed, err.Error())
		return ev, &verr
	}
	var sb storedBuf
	d.decodeOne(v, 0, now, &ev, &verr, line, &sb)
	if len(verr.Errors) > 0 {
		return ev, &verr
	}
	return ev, nil
}

// checkFast fails if the fast path takes line and decodes it other than the general path does.
// It reports whether the fast path took it.
func checkFast(t *testing.T, d *Decoder, line []byte) bool {
	t.Helper()
	var ev Event
	var bufs decodeBufs
	if !d.fastLine(line, now, &ev, &bufs) {
		return false
	}
	want, verr := general(d, line)
	if verr != nil {
		t.Fatalf("the fast path took %q, which the general path refuses: %v", line, verr)
	}
	if !sameEvent(ev, want) || !bytes.Equal(ev.Raw, want.Raw) {
		t.Fatalf("fast path decoded %q as\n%+v (raw %x), the general path as\n%+v (raw %x)", line, ev, ev.Raw, want, want.Raw)
	}
	return true
}

// fastSeeds are events the fast path takes, and variants of them it must leave to the general
// path (or decode exactly as it does).
func fastSeeds() []string {
	seeds := []string{
		good,
		`{"specversion":"1.0","id":"1","source":"s","type":"storage.measured","data":{"tenant":"t","storage_class":"hot","bytes":0}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"user.login","data":{"tenant":"t","user":"u"}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"user.login","datacontenttype":"application/json","data":{"tenant":"t","user":"u","session_seconds":30}}`,
		`{"specversion":"1.0","id":"d","source":"s","type":"document.deleted","data":{"tenant":"t","user":"u","document_id":"d1","doc_type":"pdf","bytes":12,"content_hash":"sha256:ab"}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"ingest.completed","data":{"tenant":"t","source":"s3","bytes":5,"records":1,"duration_ms":7,"content_hash":"h","user":"u"}}`,
		` { "specversion" : "1.0" , "id" : "1" , "source":"s","type":"feature.used","data": { "tenant" : "t" , "user":"u","feature":"f" } } `,
		// Left to the general path: an escape, a null, a repeated or unknown key, a float, a
		// negative, a leading zero, a custom or unknown type, a wrong specversion, bad ids.
		`{"specversion":"1.0","id":"\u0031","source":"s","type":"feature.used","data":{"tenant":"t","user":"u","feature":"f"}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"ingest.completed","data":{"tenant":"t","source":"s3","bytes":5,"records":1,"user":null}}`,
		`{"specversion":"1.0","id":"1","id":"2","source":"s","type":"feature.used","data":{"tenant":"t","user":"u","feature":"f"}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"feature.used","data":{"tenant":"t","user":"u","feature":"f","feature":"g"}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"feature.used","data":{"tenant":"t","tenant":"u","user":"u","feature":"f"}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"feature.used","ext":"x","data":{"tenant":"t","user":"u","feature":"f"}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"feature.used","data":{"tenant":"t","user":"u","feature":"f","extra":"x"}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"storage.measured","data":{"tenant":"t","storage_class":"hot","bytes":1.5}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"storage.measured","data":{"tenant":"t","storage_class":"hot","bytes":-1}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"storage.measured","data":{"tenant":"t","storage_class":"hot","bytes":007}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"storage.measured","data":{"tenant":"t","storage_class":"hot","bytes":9223372036854775808}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"storage.measured","data":{"tenant":"t","storage_class":7,"bytes":1}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"storage.measured","data":{"tenant":"t","storage_class":"hot","bytes":"1"}}`,
		`{"specversion":"1.1","id":"1","source":"s","type":"feature.used","data":{"tenant":"t","user":"u","feature":"f"}}`,
		`{"specversion":"1.0","id":"","source":"s","type":"feature.used","data":{"tenant":"t","user":"u","feature":"f"}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"com.example.x","data":{"tenant":"t"}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"feature.used","data":{"tenant":"-t","user":"u","feature":"f"}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"feature.used","data":{"tenant":"t","user":"u","feature":"__overflow__"}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"feature.used","data":{"tenant":"t","user":"u"}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"feature.used","time":"","data":{"tenant":"t","user":"u","feature":"f"}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"feature.used","time":"2020-01-01T00:00:00Z","data":{"tenant":"t","user":"u","feature":"f"}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"feature.used","datacontenttype":"","data":{"tenant":"t","user":"u","feature":"f"}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"feature.used","data":{"tenant":"t","user":"u","feature":"f"}}x`,
		`{"specversion":"1.0","id":"1","source":"s","type":"feature.used","data":{"tenant":"t","user":"u","feature":"f"},}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"feature.used","data":{}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"feature.used","data":[]}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"feature.used","data":{"tenant":"t","user":"u","feature":"caf` + "\xe9" + `"}}`,
	}
	return append(seeds, simulated()...)
}

// simulated returns 50 events of the simulator's mix (testdata/simulated.ndjson, written by
// simulate.NewGenerator(20, 7).Batch(50, now-1m); the simulator cannot be imported here).
func simulated() []string {
	b, err := os.ReadFile("testdata/simulated.ndjson")
	if err != nil {
		panic(err)
	}
	var lines []string
	for line := range bytes.Lines(b) {
		lines = append(lines, string(bytes.TrimSpace(line)))
	}
	return lines
}

// FuzzFastPath: whatever the fast path takes, it decodes exactly as the general path does.
func FuzzFastPath(f *testing.F) {
	for _, s := range fastSeeds() {
		f.Add(s)
	}
	d := &Decoder{Now: func() time.Time { return now }, Custom: map[string]bool{"com.example.x": true}}
	f.Fuzz(func(t *testing.T, line string) {
		checkFast(t, d, []byte(line))
	})
}

// The fast path is taken by the events platforms send (the simulator's mix, every type, with
// white space between tokens), and not by the variants it must leave to the general path.
func TestFastPathCoverage(t *testing.T) {
	d := &Decoder{Now: func() time.Time { return now }}
	seeds := fastSeeds()
	taken := 0
	for _, s := range seeds {
		if checkFast(t, d, []byte(s)) {
			taken++
		}
	}
	// Seven hand-written valid events and the 50 of the simulator; none of the 27 variants.
	if want := 7 + 50; taken != want {
		t.Fatalf("the fast path took %d of the seeds, want %d", taken, want)
	}
}

// A body of JSON (one event or an array) takes the fast path too, with the same events as the
// general path; one event it cannot take sends the whole body to the general path.
func TestFastPathBodies(t *testing.T) {
	d := &Decoder{Now: func() time.Time { return now }, MaxEvents: 100}
	lines := simulated()
	array := "[" + strings.Join(lines, ",\n") + "]"
	evs, ok := d.fastArray([]byte(array), now)
	if !ok || len(evs) != len(lines) {
		t.Fatalf("fastArray took %v, %d events", ok, len(evs))
	}
	for i, line := range lines {
		want, verr := general(d, []byte(line))
		if verr != nil || !sameEvent(evs[i], want) || !bytes.Equal(evs[i].Raw, want.Raw) {
			t.Fatalf("event %d: %+v, want %+v (%v)", i, evs[i], want, verr)
		}
	}
	one, ok := d.fastObject([]byte(lines[0]), now)
	if !ok || !sameEvent(one[0], evs[0]) {
		t.Fatalf("fastObject: %v %+v", ok, one)
	}
	for _, body := range []string{
		"[]", "[" + lines[0] + "", "[" + lines[0] + ",]", "[" + lines[0] + "]x",
		"[" + lines[0] + `,{"specversion":"1.0","id":"1","source":"s","type":"feature.used","ext":1,"data":{"tenant":"t","user":"u","feature":"f"}}]`,
		"[" + strings.Repeat(lines[0]+",", 100) + lines[0] + "]", // past MaxEvents
		"{}", "[[]]", "[" + lines[0] + "," + lines[1] + "," + "null]",
	} {
		if _, ok := d.fastArray([]byte(body), now); ok {
			t.Errorf("fastArray took %.80q", body)
		}
	}
	// Through Decode, the general path then decodes (or refuses) them as before.
	mixed := "[" + lines[0] + `,{"specversion":"1.0","id":"x","source":"s","type":"feature.used","ext":1,"data":{"tenant":"t","user":"u","feature":"f"}}]`
	got, err := d.Decode("application/json", []byte(mixed))
	if err != nil || len(got) != 2 || got[1].Raw[0] == storedV1 {
		t.Fatalf("mixed array: %v, %d events", err, len(got))
	}
	if _, err := d.Decode("application/json", []byte("["+strings.Repeat(lines[0]+",", 100)+lines[0]+"]")); err == nil || !strings.Contains(err.Error(), "at most 100") {
		t.Fatalf("batch limit: %v", err)
	}
}

// BenchmarkDecodePaths decodes the same NDJSON body by the fast path (Decode) and by the general
// path alone, in one run: the ratio is the figure to read on a shared machine.
func BenchmarkDecodePaths(b *testing.B) {
	lines := simulated()
	var body []byte
	for len(body) < 200<<10 {
		for _, l := range lines {
			body = append(append(body, l...), '\n')
		}
	}
	n := len(bytes.Split(bytes.TrimSpace(body), []byte("\n")))
	d := &Decoder{Now: func() time.Time { return now }}
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := d.Decode("application/x-ndjson", body); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("general", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		var p fastjson.Parser
		for b.Loop() {
			var verr Error
			var sb storedBuf
			events := make([]Event, 0, n)
			for line := range bytes.Lines(body) {
				v, err := p.ParseBytes(bytes.TrimSpace(line))
				if err != nil {
					b.Fatal(err)
				}
				events = append(events, Event{})
				d.decodeOne(v, len(events)-1, now, &events[len(events)-1], &verr, line, &sb)
			}
			if len(verr.Errors) > 0 {
				b.Fatal(verr.Errors[0])
			}
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	})
}
