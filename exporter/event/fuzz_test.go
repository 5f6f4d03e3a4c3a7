package event

import (
	"errors"
	"testing"
	"time"
)

// FuzzDecode: any input either decodes into valid events or is refused with a typed error;
// never a panic, never events with an error.
func FuzzDecode(f *testing.F) {
	f.Add("application/json", good)
	f.Add("application/json", "["+good+"]")
	f.Add("application/x-ndjson", good+"\n"+good)
	f.Add("application/json", `{"specversion":"1.0","id":"1","source":"s","type":"storage.measured","data":{"tenant":"t","storage_class":"hot","bytes":0}}`)
	f.Add("application/json", `{"data":{"tenant":"t","bytes":-0}}`)
	f.Add("application/json", `[{},{"id":null},[],"x"]`)
	f.Add("application/x-ndjson", "\n\n{\"id\":\"\\u0000\"}\n")
	f.Fuzz(func(t *testing.T, ct, body string) {
		d := &Decoder{MaxEvents: 100, Now: func() time.Time { return now }}
		evs, err := d.Decode(ct, []byte(body))
		if err != nil {
			var ee *Error
			if evs != nil {
				t.Fatal("events returned with an error")
			}
			if !errors.As(err, &ee) && !errors.Is(err, ErrUnsupportedMediaType) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		for _, e := range evs {
			if e.ID == "" || e.Source == "" || !ValidID(e.Tenant) || len(e.Raw) == 0 {
				t.Fatalf("invalid event accepted: %+v", e)
			}
			for _, q := range e.Quantities {
				if q.Value < 0 {
					t.Fatalf("negative quantity accepted: %+v", q)
				}
			}
			// The stored raw form decodes again to the same event.
			again, err := d.DecodeStored(e.Raw, e.Time)
			if err != nil || !sameEvent(e, again) {
				t.Fatalf("stored form does not decode back: %v %+v, want %+v", err, again, e)
			}
		}
	})
}
