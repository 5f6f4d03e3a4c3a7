package event

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sameEvent compares what the ledger derives from: everything but Raw.
func sameEvent(a, b Event) bool {
	a.Raw, b.Raw = nil, nil
	if len(a.Fields) == 0 {
		a.Fields = nil
	}
	if len(b.Fields) == 0 {
		b.Fields = nil
	}
	if len(a.Quantities) == 0 {
		a.Quantities = nil
	}
	if len(b.Quantities) == 0 {
		b.Quantities = nil
	}
	return reflect.DeepEqual(a, b)
}

func TestStoredFormRoundTrip(t *testing.T) {
	d := &Decoder{Now: func() time.Time { return now }, Custom: map[string]bool{"com.example.api_call": true}}
	var bodies []string
	for typ, s := range Schemas {
		data := `"tenant":"t-1"`
		for _, f := range append(s.Fields, s.OptionalFields...) {
			v := "v-" + f + " é" // labels may hold any text; user ids may not
			if f == "user" {
				v = "u-1@x"
			}
			data += fmt.Sprintf(`,%q:%q`, f, v)
		}
		for i, q := range append(s.Quantities, s.OptionalQuantities...) {
			data += fmt.Sprintf(`,%q:%d`, q, 1<<(20*i))
		}
		bodies = append(bodies, fmt.Sprintf(`{"specversion":"1.0","id":"id-%s","source":"svc/1","type":%q,"time":"2026-11-26T11:30:00.123456789Z","data":{%s}}`, typ, typ, data))
	}
	bodies = append(bodies,
		`{"specversion":"1.0","id":"x","source":"s","type":"com.example.api_call","datacontenttype":"application/json","data":{"tenant":"t","endpoint":"/x","calls":9223372036854775807}}`,
		`{"specversion":"1.0","id":"no-time","source":"s","type":"user.login","data":{"tenant":"t","user":"u"}}`,
		`{"specversion":"1.0","id":"q\"uote\u0001","source":"s","type":"user.login","data":{"tenant":"t","user":"u"}}`,
	)
	for _, body := range bodies {
		evs, err := d.Decode("application/x-ndjson", []byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		ev := evs[0]
		if ev.Raw[0] != storedV1 {
			t.Errorf("%s: kept as JSON, want the binary form", body)
			continue
		}
		if len(ev.Raw) >= len(body) {
			t.Errorf("binary form of %d bytes for %d bytes of JSON", len(ev.Raw), len(body))
		}
		back, err := d.DecodeStored(ev.Raw, ev.Time)
		if err != nil || !sameEvent(ev, back) {
			t.Fatalf("%s: decoded back %+v, %v; want %+v", body, back, err, ev)
		}
		// For people: JSON again, which decodes to the same event.
		js, err := StoredJSON(ev.Raw, ev.Time)
		if err != nil {
			t.Fatal(err)
		}
		d2 := &Decoder{Now: func() time.Time { return ev.Time }, Custom: d.Custom}
		again, err := d2.Decode("application/json", js)
		if err != nil || !sameEvent(ev, again[0]) {
			t.Fatalf("StoredJSON %s: %+v, %v", js, again, err)
		}
		if strings.Contains(body, `"time"`) != strings.Contains(string(js), `"time"`) {
			t.Errorf("StoredJSON %s: time attribute not as received in %s", js, body)
		}
	}
}

// Anything beyond the contract's attributes keeps the event as the JSON it arrived as.
func TestStoredFormKeepsJSONForOtherAttributes(t *testing.T) {
	for _, body := range []string{
		strings.Replace(good, `"specversion"`, `"subject":"s","specversion"`, 1),
		strings.Replace(good, `"tenant":"acme"`, `"tenant":"acme","region":"eu"`, 1),
		`{"specversion":"1.0","id":"1","source":"s","type":"ingest.completed","data":{"tenant":"t","source":"s3","bytes":1,"records":2,"user":null}}`,
	} {
		evs, err := dec().Decode("application/x-ndjson", []byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if string(evs[0].Raw) != body {
			t.Errorf("stored %q, want the JSON as received", evs[0].Raw)
		}
		if js, _ := StoredJSON(evs[0].Raw, evs[0].Time); string(js) != body {
			t.Errorf("StoredJSON = %s", js)
		}
	}
	// Arrays are encoded again as compact JSON.
	evs, err := dec().Decode("application/json", []byte(`[`+strings.Replace(good, `"specversion"`, `"subject" : "s", "specversion"`, 1)+`]`))
	if err != nil || !strings.HasPrefix(string(evs[0].Raw), `{"subject":"s","specversion"`) {
		t.Fatalf("%s, %v", evs[0].Raw, err)
	}
}

// A damaged binary form is an error, never a panic or a wrong event.
func TestStoredFormTruncated(t *testing.T) {
	evs, err := dec().Decode("application/x-ndjson", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	raw := evs[0].Raw
	for n := 1; n < len(raw); n++ {
		if _, err := dec().DecodeStored(raw[:n], now); err == nil {
			t.Errorf("%d of %d bytes decoded", n, len(raw))
		}
	}
	if _, err := dec().DecodeStored(append(append([]byte{}, raw...), 0), now); err == nil {
		t.Error("trailing byte accepted")
	}
	bad := append([]byte{}, raw...)
	bad[1] = 200 // a type beyond the table
	if _, err := dec().DecodeStored(bad, now); err == nil {
		t.Error("unknown type number accepted")
	}
}

// The tables are append only: stored events name types and fields by position.
func TestStoredNamesAreStable(t *testing.T) {
	if got := strings.Join(storedTypes, ","); got != ",document.created,document.deleted,storage.measured,ai.tokens,ingest.completed,user.login,feature.used" {
		t.Errorf("storedTypes changed: %s", got)
	}
	if got := strings.Join(storedNames, ","); got != ",user,document_id,doc_type,content_hash,bytes,storage_class,feature,model,input_tokens,output_tokens,source,records,duration_ms,session_seconds" {
		t.Errorf("storedNames changed: %s", got)
	}
	for typ, s := range Schemas {
		if storedTypeIdx[typ] == 0 {
			t.Errorf("type %s has no number", typ)
		}
		for _, n := range append(append(append(s.Fields, s.OptionalFields...), s.Quantities...), s.OptionalQuantities...) {
			if storedNameIdx[n] == 0 {
				t.Errorf("%s field %s has no number", typ, n)
			}
		}
	}
}

func FuzzDecodeStored(f *testing.F) {
	evs, _ := dec().Decode("application/x-ndjson", []byte(good))
	f.Add(evs[0].Raw)
	f.Add([]byte{storedV1, 0, 1, 'x'})
	f.Add([]byte(good))
	f.Fuzz(func(t *testing.T, raw []byte) {
		d := &Decoder{Custom: map[string]bool{}}
		ev, err := d.DecodeStored(raw, now)
		if err != nil {
			return
		}
		if _, err := StoredJSON(raw, now); err != nil {
			t.Fatalf("decodes but has no JSON: %v (%+v)", err, ev)
		}
	})
}

func TestStoredType(t *testing.T) {
	d := &Decoder{Now: func() time.Time { return now }, Custom: map[string]bool{"com.example.api_call": true}}
	for _, body := range []string{good, `{"specversion":"1.0","id":"x","source":"s","type":"com.example.api_call","data":{"tenant":"t","calls":1}}`} {
		evs, err := d.Decode("application/x-ndjson", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if typ, ok := StoredType(evs[0].Raw); !ok || typ != evs[0].Type {
			t.Errorf("StoredType = %q, %v; want %q", typ, ok, evs[0].Type)
		}
	}
	if _, ok := StoredType([]byte(good)); ok {
		t.Error("JSON form reported a type without decoding")
	}
}
