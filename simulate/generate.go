// Package simulate generates a realistic usage workload (hundreds of tenants with a few heavy
// ones, users, daily and weekly seasonality, bursts, retries that resend the same event ids),
// sends it to an exporter, and keeps the exact totals of what was acknowledged.
package simulate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Tenant is a simulated tenant.
type Tenant struct {
	ID     string
	Weight float64 // share of traffic
	Users  int
}

// Generator makes events. It is deterministic for a seed.
type Generator struct {
	Tenants []Tenant
	// QuotaBreakers get heavy AI token usage, to cross their quotas: together BreakerShare of
	// the events, in equal parts, whatever the seed (their Zipf weights are not used), so that
	// the local stack's alert timeline does not depend on the seed drawn.
	QuotaBreakers map[string]bool
	// Anomaly is a tenant whose traffic jumps twentyfold while AnomalyActive returns true.
	Anomaly       string
	AnomalyActive func(time.Time) bool

	rng      *rand.Rand
	cum      []float64
	breakers []int // indexes of QuotaBreakers in Tenants, found on first use
	seq      uint64
	source   string
	docs     map[string][]doc // live documents per tenant, so deletions match creations
	storage  map[string]int64
}

type doc struct {
	id, typ, user string
	bytes         int64
}

// NewGenerator creates n tenants named tenant-0001...; weights follow a Zipf-like law, so a few
// tenants are heavy.
func NewGenerator(n int, seed uint64) *Generator {
	g := &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), docs: map[string][]doc{}, storage: map[string]int64{},
		source: "usagectl-simulate/" + strconv.FormatUint(seed, 10)}
	total := 0.0
	for i := range n {
		w := 1 / math.Pow(float64(i+1), 0.9)
		users := 3 + int(200*w) + g.rng.IntN(10)
		g.Tenants = append(g.Tenants, Tenant{ID: fmt.Sprintf("tenant-%04d", i+1), Weight: w, Users: users})
		total += w
	}
	// Shuffle weights so that heavy tenants are not simply the first ids.
	g.rng.Shuffle(len(g.Tenants), func(i, j int) {
		g.Tenants[i].Weight, g.Tenants[j].Weight = g.Tenants[j].Weight, g.Tenants[i].Weight
		g.Tenants[i].Users, g.Tenants[j].Users = g.Tenants[j].Users, g.Tenants[i].Users
	})
	acc := 0.0
	for _, t := range g.Tenants {
		acc += t.Weight / total
		g.cum = append(g.cum, acc)
	}
	return g
}

// Seasonality is the relative traffic at t: a daily cycle peaking at 14:00 UTC and quieter
// weekends. It averages about 1.
func Seasonality(t time.Time) float64 {
	h := float64(t.Hour()) + float64(t.Minute())/60
	daily := 1 + 0.6*math.Cos((h-14)/24*2*math.Pi)
	if wd := t.Weekday(); wd == time.Saturday || wd == time.Sunday {
		daily *= 0.45
	}
	return daily
}

func (g *Generator) pickTenant(at time.Time) *Tenant {
	if g.Anomaly != "" && g.AnomalyActive != nil && g.AnomalyActive(at) && g.rng.IntN(4) == 0 {
		for i := range g.Tenants {
			if g.Tenants[i].ID == g.Anomaly {
				return &g.Tenants[i]
			}
		}
	}
	if len(g.QuotaBreakers) > 0 && len(g.QuotaBreakers) < len(g.Tenants) {
		if g.breakers == nil {
			g.breakers = []int{}
			for i := range g.Tenants {
				if g.QuotaBreakers[g.Tenants[i].ID] {
					g.breakers = append(g.breakers, i)
				}
			}
		}
		if len(g.breakers) > 0 {
			if g.rng.Float64() < BreakerShare {
				return &g.Tenants[g.breakers[g.rng.IntN(len(g.breakers))]]
			}
			for {
				if t := g.zipf(); !g.QuotaBreakers[t.ID] {
					return t
				}
			}
		}
	}
	return g.zipf()
}

// BreakerShare is the share of events that go to the quota breakers, together.
const BreakerShare = 0.2

// zipf draws a tenant by weight.
func (g *Generator) zipf() *Tenant {
	x := g.rng.Float64()
	lo, hi := 0, len(g.cum)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if g.cum[mid] < x {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return &g.Tenants[lo]
}

var (
	docTypes  = []string{"pdf", "docx", "xlsx", "image", "markdown"}
	features  = []string{"chat", "summarize", "search", "translate", "classify"}
	models    = []string{"gpt-large", "gpt-small", "claude-mid", "embed-v2"}
	sources   = []string{"s3", "kafka", "api", "sftp"}
	classes   = []string{"standard", "archive"}
	uiFeature = []string{"export", "share", "dashboard", "search", "api_keys", "sso"}
)

// Next appends one event, as a compact CloudEvents JSON object, to buf.
func (g *Generator) Next(buf []byte, at time.Time) []byte {
	t := g.pickTenant(at)
	g.seq++
	user := "user-" + strconv.Itoa(1+int(float64(t.Users)*math.Pow(g.rng.Float64(), 2)))
	buf = append(buf, `{"specversion":"1.0","id":"`...)
	buf = strconv.AppendUint(buf, g.seq, 36)
	buf = append(buf, `","source":"`...)
	buf = append(buf, g.source...)
	buf = append(buf, `","time":"`...)
	buf = at.UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","type":"`...)
	r := g.rng.IntN(100)
	if g.QuotaBreakers[t.ID] && r < 60 {
		r = 0 // mostly AI traffic, heavy
	}
	data := make([]byte, 0, 160)
	data = append(data, `{"tenant":"`...)
	data = append(data, t.ID...)
	data = append(data, '"')
	str := func(k, v string) {
		data = append(data, `,"`...)
		data = append(data, k...)
		data = append(data, `":"`...)
		data = append(data, v...)
		data = append(data, '"')
	}
	num := func(k string, v int64) {
		data = append(data, `,"`...)
		data = append(data, k...)
		data = append(data, `":`...)
		data = strconv.AppendInt(data, v, 10)
	}
	var typ string
	switch {
	case r < 35:
		typ = "ai.tokens"
		str("user", user)
		str("feature", features[g.rng.IntN(len(features))])
		str("model", models[g.rng.IntN(len(models))])
		in, out := int64(50+g.rng.IntN(2000)), int64(20+g.rng.IntN(800))
		if g.QuotaBreakers[t.ID] {
			in, out = in*40, out*40
		}
		num("input_tokens", in)
		num("output_tokens", out)
	case r < 60:
		typ = "feature.used"
		str("user", user)
		str("feature", uiFeature[g.rng.IntN(len(uiFeature))])
	case r < 72:
		typ = "document.created"
		d := doc{id: "doc-" + strconv.FormatUint(g.seq, 36), typ: docTypes[g.rng.IntN(len(docTypes))], user: user, bytes: int64(1000 + g.rng.IntN(5<<20))}
		g.docs[t.ID] = append(g.docs[t.ID], d)
		str("user", d.user)
		str("document_id", d.id)
		str("doc_type", d.typ)
		num("bytes", d.bytes)
	case r < 75 && len(g.docs[t.ID]) > 0:
		typ = "document.deleted"
		ds := g.docs[t.ID]
		i := g.rng.IntN(len(ds))
		d := ds[i]
		ds[i] = ds[len(ds)-1]
		g.docs[t.ID] = ds[:len(ds)-1]
		str("user", user)
		str("document_id", d.id)
		str("doc_type", d.typ)
		num("bytes", d.bytes)
	case r < 85:
		typ = "user.login"
		str("user", user)
		num("session_seconds", int64(30+g.rng.IntN(3600)))
	case r < 95:
		typ = "ingest.completed"
		str("source", sources[g.rng.IntN(len(sources))])
		if g.rng.IntN(2) == 0 {
			str("user", user)
		}
		num("bytes", int64(1<<10+g.rng.IntN(50<<20)))
		num("records", int64(1+g.rng.IntN(100000)))
		num("duration_ms", int64(100+g.rng.IntN(60000)))
	default:
		typ = "storage.measured"
		g.storage[t.ID] += int64(g.rng.IntN(10 << 20))
		str("storage_class", classes[g.rng.IntN(len(classes))])
		num("bytes", g.storage[t.ID])
	}
	data = append(data, '}')
	buf = append(buf, typ...)
	buf = append(buf, `","data":`...)
	buf = append(buf, data...)
	return append(buf, '}')
}

// Batch returns n events at time at as NDJSON, one request's body.
func (g *Generator) Batch(n int, at time.Time) []byte {
	var body []byte
	for range n {
		body = g.Next(body, at)
		body = append(body, '\n')
	}
	return body
}
