package cluster

import (
	"io"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/usagemeter/usagemeter/exporter/event"
)

func TestPartitionsOptions(t *testing.T) {
	p, err := parsePartitions(Options{Partitions: 4, Owned: "1, 3", Peers: []string{"http://10.0.0.2:9477=0,2", "http://10.0.0.3:9477=2"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.owned, []bool{false, true, false, true}) || p.describe() != "1,3/4" {
		t.Errorf("owned %v (%s)", p.owned, p.describe())
	}
	if len(p.peers[2]) != 2 || len(p.peers[0]) != 1 || len(p.peers[1]) != 0 {
		t.Errorf("peers %v", p.peers)
	}
	if got := p.filter("u"); !slices.Equal(got, []string{"u.events.1", "u.events.3", "u.events.multi"}) {
		t.Errorf("filter %v", got)
	}
	all, _ := parsePartitions(Options{Partitions: 4})
	if got := all.filter("u"); !slices.Equal(got, []string{"u.events.>"}) || !all.ownsAll() {
		t.Errorf("a replica owning every partition filters %v", got)
	}
	for _, bad := range []Options{
		{Partitions: 2, Owned: "2"},
		{Partitions: 2, Owned: "x"},
		{Partitions: 2, Peers: []string{"10.0.0.2:9477=1"}},
		{Partitions: 2, Peers: []string{"http://10.0.0.2:9477"}},
		{Partitions: 2, Peers: []string{"http://10.0.0.2:9477=5"}},
	} {
		if _, err := parsePartitions(bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

// A request goes to its tenants' partition, or to the multi subject when it spans several;
// each replica keeps only its own tenants' events of a multi message.
func TestPartitionSubjects(t *testing.T) {
	p, _ := parsePartitions(Options{Partitions: 2, Owned: "0"})
	var t0, t1 string
	for i := 0; t0 == "" || t1 == ""; i++ {
		name := "tenant-" + string(rune('a'+i))
		if p.of(name) == 0 && t0 == "" {
			t0 = name
		} else if p.of(name) == 1 && t1 == "" {
			t1 = name
		}
	}
	ev := func(tenant string) event.Event { return event.Event{Tenant: tenant} }
	if s, own := p.subject("u", []event.Event{ev(t0), ev(t0)}); s != "u.events.0" || !own {
		t.Errorf("own partition: %s %v", s, own)
	}
	if s, own := p.subject("u", []event.Event{ev(t1)}); s != "u.events.1" || own {
		t.Errorf("other partition: %s %v", s, own)
	}
	if s, own := p.subject("u", []event.Event{ev(t0), ev(t1)}); s != "u.events.multi" || own {
		t.Errorf("both partitions: %s %v", s, own)
	}
	kept := p.keep([]event.Event{ev(t0), ev(t1), ev(t0)})
	if len(kept) != 2 || kept[0].Tenant != t0 || kept[1].Tenant != t0 {
		t.Errorf("kept %v", kept)
	}
}

func TestRequestTenant(t *testing.T) {
	for _, tc := range []struct{ method, target, body, want string }{
		{"GET", "/v1/usage?tenant=acme&meter=ai_tokens", "", "acme"},
		{"GET", "/v1/tenants/acme/quotas", "", "acme"},
		{"GET", "/v1/analytics/tenants/acme/insights", "", "acme"},
		{"POST", "/v1/quota/check", `{"tenant":"acme","meter":"ai_tokens","amount":1}`, "acme"},
		{"GET", "/v1/meters", "", ""},
		{"POST", "/v1/events", `[{"data":{"tenant":"acme"}}]`, ""},
	} {
		r := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
		if got := requestTenant(r); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.method, tc.target, got, tc.want)
		}
		if b, _ := io.ReadAll(r.Body); string(b) != tc.body {
			t.Errorf("%s %s: the body left for the handler is %q", tc.method, tc.target, b)
		}
	}
}
