package event

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func dec() *Decoder { return &Decoder{MaxEvents: 3, Now: func() time.Time { return now }} }

const good = `{"specversion":"1.0","id":"e1","source":"svc","type":"ai.tokens","time":"2026-11-26T11:00:00Z","data":{"tenant":"acme","user":"u1","feature":"chat","model":"m","input_tokens":10,"output_tokens":5}}`

func TestDecodeShapes(t *testing.T) {
	cases := []struct {
		ct, body string
		n        int
	}{
		{"application/cloudevents+json", good, 1},
		{"application/json", good, 1},
		{"application/json", "[" + good + "," + strings.Replace(good, `"e1"`, `"e2"`, 1) + "]", 2},
		{"application/cloudevents-batch+json", "[" + good + "]", 1},
		{"application/x-ndjson", good + "\n\n" + good + "\n", 2},
		{"application/json; charset=utf-8", good, 1},
		{"", good, 1},
	}
	for _, c := range cases {
		evs, err := dec().Decode(c.ct, []byte(c.body))
		if err != nil || len(evs) != c.n {
			t.Errorf("%s: %d events, %v; want %d", c.ct, len(evs), err, c.n)
			continue
		}
		e := evs[0]
		if e.ID != "e1" || e.Source != "svc" || e.Tenant != "acme" || !e.Time.Equal(now.Add(-time.Hour)) || len(e.Raw) == 0 {
			t.Errorf("%s: decoded %+v", c.ct, e)
		}
		if v, _ := e.Quantity("input_tokens"); v != 10 {
			t.Errorf("input_tokens = %d", v)
		}
		if v, _ := e.Field("model"); v != "m" {
			t.Errorf("model = %q", v)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	mod := func(old, new string) string { return strings.Replace(good, old, new, 1) }
	cases := []struct {
		name, body, field, reason string
	}{
		{"specversion", mod(`"1.0"`, `"0.3"`), "specversion", ReasonInvalid},
		{"no id", mod(`"id":"e1",`, ``), "id", ReasonInvalid},
		{"empty id", mod(`"id":"e1"`, `"id":""`), "id", ReasonInvalid},
		{"id not string", mod(`"id":"e1"`, `"id":1`), "id", ReasonInvalid},
		{"long id", mod(`"id":"e1"`, `"id":"`+strings.Repeat("x", 300)+`"`), "id", ReasonInvalid},
		{"no source", mod(`"source":"svc",`, ``), "source", ReasonInvalid},
		{"no type", mod(`"type":"ai.tokens",`, ``), "type", ReasonInvalid},
		{"unknown type", mod(`"ai.tokens"`, `"ai.unknown"`), "type", ReasonInvalid},
		{"bad time", mod(`2026-11-26T11:00:00Z`, `yesterday`), "time", ReasonInvalid},
		{"too old", mod(`2026-11-26T11:00:00Z`, `2026-10-20T11:00:00Z`), "time", ReasonTooOld},
		{"too new", mod(`2026-11-26T11:00:00Z`, `2026-11-26T12:06:00Z`), "time", ReasonTooNew},
		{"no data", mod(`,"data":{"tenant":"acme","user":"u1","feature":"chat","model":"m","input_tokens":10,"output_tokens":5}`, ``), "data", ReasonInvalid},
		{"data not object", mod(`"data":{"tenant":"acme","user":"u1","feature":"chat","model":"m","input_tokens":10,"output_tokens":5}`, `"data":"x"`), "data", ReasonInvalid},
		{"no tenant", mod(`"tenant":"acme",`, ``), "data.tenant", ReasonInvalid},
		{"bad tenant", mod(`"acme"`, `"ac me"`), "data.tenant", ReasonInvalid},
		{"tenant leading dot", mod(`"acme"`, `".acme"`), "data.tenant", ReasonInvalid},
		{"tenant too long", mod(`"acme"`, `"`+strings.Repeat("a", 129)+`"`), "data.tenant", ReasonInvalid},
		{"bad user", mod(`"u1"`, `"u/1"`), "data.user", ReasonInvalid},
		{"missing quantity", mod(`,"output_tokens":5`, ``), "data.output_tokens", ReasonInvalid},
		{"negative", mod(`"input_tokens":10`, `"input_tokens":-1`), "data.input_tokens", ReasonInvalid},
		{"fraction", mod(`"input_tokens":10`, `"input_tokens":1.5`), "data.input_tokens", ReasonInvalid},
		{"exponent", mod(`"input_tokens":10`, `"input_tokens":1e3`), "data.input_tokens", ReasonInvalid},
		{"string quantity", mod(`"input_tokens":10`, `"input_tokens":"10"`), "data.input_tokens", ReasonInvalid},
		{"overflow", mod(`"input_tokens":10`, `"input_tokens":99999999999999999999`), "data.input_tokens", ReasonInvalid},
		{"missing field", mod(`"feature":"chat",`, ``), "data.feature", ReasonInvalid},
		{"empty field", mod(`"feature":"chat"`, `"feature":""`), "data.feature", ReasonInvalid},
		{"control char", mod(`"feature":"chat"`, `"feature":"ch\u0001at"`), "data.feature", ReasonInvalid},
		{"reserved", mod(`"feature":"chat"`, `"feature":"__overflow__"`), "data.feature", ReasonInvalid},
		{"datacontenttype", mod(`"type"`, `"datacontenttype":"text/xml","type"`), "datacontenttype", ReasonInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The bad event is second of two: the whole request is refused, and the error
			// names its index.
			body := "[" + strings.Replace(good, `"e1"`, `"e0"`, 1) + "," + c.body + "]"
			evs, err := dec().Decode("application/json", []byte(body))
			var ee *Error
			if !errors.As(err, &ee) {
				t.Fatalf("err = %v, events = %d; want a validation error", err, len(evs))
			}
			if evs != nil {
				t.Fatalf("events returned with an error")
			}
			found := false
			for _, fe := range ee.Errors {
				if fe.Index == 1 && fe.Field == c.field {
					found = true
				}
				if fe.Index != 1 {
					t.Errorf("error on the good event: %+v", fe)
				}
			}
			if !found {
				t.Errorf("errors %+v do not name event 1 field %s", ee.Errors, c.field)
			}
			if ee.Reasons[c.reason] != 1 {
				t.Errorf("reasons = %v, want %s", ee.Reasons, c.reason)
			}
		})
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	for _, c := range []struct{ ct, body, reason string }{
		{"application/json", `{"specversion":`, ReasonMalformed},
		{"application/json", `42`, ReasonMalformed},
		{"application/json", `[]`, ReasonMalformed},
		{"application/cloudevents+json", "[" + good + "]", ReasonMalformed},
		{"application/cloudevents-batch+json", good, ReasonMalformed},
		{"application/json", "[" + good + "," + good + "," + good + "," + good + "]", ReasonBatchTooBig},
		{"application/x-ndjson", good + "\n{not json\n", ReasonInvalid},
		{"application/json", `[1]`, ReasonInvalid},
	} {
		_, err := dec().Decode(c.ct, []byte(c.body))
		var ee *Error
		if !errors.As(err, &ee) {
			t.Errorf("%s %.30q: err = %v", c.ct, c.body, err)
			continue
		}
		if ee.Reason != c.reason && !(c.reason == ReasonInvalid && ee.Reasons[ReasonMalformed] > 0) {
			t.Errorf("%s %.30q: reason %s, want %s", c.ct, c.body, ee.Reason, c.reason)
		}
	}
	if _, err := dec().Decode("text/plain", []byte(good)); !errors.Is(err, ErrUnsupportedMediaType) {
		t.Errorf("text/plain: %v", err)
	}
}

func TestTimeDefaultsAndOptionalFields(t *testing.T) {
	body := `{"specversion":"1.0","id":"x","source":"s","type":"ingest.completed","data":{"tenant":"t","source":"kafka","bytes":1,"records":2}}`
	evs, err := dec().Decode("application/json", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if !evs[0].Time.Equal(now) {
		t.Errorf("time = %v, want receipt time %v", evs[0].Time, now)
	}
	if _, ok := evs[0].Field("user"); ok {
		t.Error("absent optional user decoded")
	}
	if _, ok := evs[0].Quantity("duration_ms"); ok {
		t.Error("absent optional duration decoded")
	}
}

func TestEveryContractType(t *testing.T) {
	for typ, s := range Schemas {
		data := `"tenant":"t"`
		for _, f := range append(s.Fields, s.OptionalFields...) {
			data += fmt.Sprintf(`,%q:"v"`, f)
		}
		for _, q := range append(s.Quantities, s.OptionalQuantities...) {
			data += fmt.Sprintf(`,%q:7`, q)
		}
		body := fmt.Sprintf(`{"specversion":"1.0","id":"1","source":"s","type":%q,"data":{%s}}`, typ, data)
		evs, err := dec().Decode("application/json", []byte(body))
		if err != nil {
			t.Errorf("%s: %v", typ, err)
			continue
		}
		if len(evs[0].Fields) != len(s.Fields)+len(s.OptionalFields) || len(evs[0].Quantities) != len(s.Quantities)+len(s.OptionalQuantities) {
			t.Errorf("%s: decoded %+v", typ, evs[0])
		}
	}
}

func TestCustomTypes(t *testing.T) {
	d := &Decoder{Now: func() time.Time { return now }, Custom: map[string]bool{"com.example.api_call": true}}
	body := `{"specversion":"1.0","id":"1","source":"s","type":"com.example.api_call","data":{"tenant":"t","endpoint":"/x","calls":3}}`
	evs, err := d.Decode("application/json", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := evs[0].Quantity("calls"); v != 3 {
		t.Errorf("calls = %d", v)
	}
	bad := strings.Replace(body, `"calls":3`, `"calls":[3]`, 1)
	if _, err := d.Decode("application/json", []byte(bad)); err == nil {
		t.Error("array data field accepted")
	}
}

func TestValidID(t *testing.T) {
	for s, want := range map[string]bool{"a": true, "A9._:@-x": true, "": false, "-a": false, "a b": false, "ä": false, strings.Repeat("a", 128): true, strings.Repeat("a", 129): false} {
		if ValidID(s) != want {
			t.Errorf("ValidID(%q) = %v", s, !want)
		}
	}
}
