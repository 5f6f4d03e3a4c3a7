// Package collector exposes the ledger's totals as Prometheus metrics. Values are read from the
// durable totals at scrape time, so counters never reset when the exporter restarts, and a
// series cap folds label sets past it into one __overflow__ series.
//
// The usage families can hold hundreds of thousands of series, so they are rendered directly
// into the exposition (text or OpenMetrics) with each series' label text cached, as
// kube-state-metrics does, instead of building a client_golang metric per series per scrape.
// The exporter's own metrics go through client_golang as usual.
package collector

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/meter"
	"github.com/usagemeter/usagemeter/exporter/seriescap"
)

// Overflow is the label value of series folded past the cap.
const Overflow = seriescap.Overflow

type family struct {
	def     *meter.Def
	name    string
	help    string
	counter bool
	labels  []string // label names, tenant first (and user last, with per-user labels)
	windows []time.Duration
	user    bool
}

// Usage renders the usage_* metric families of every meter that declares one.
type Usage struct {
	store    *ledger.Store
	families []*family
	now      func() time.Time
	// pseudonymize turns a tenant's user id into its label value; only used with per-user
	// labels.
	pseudonymize func(tenant, user string) string

	// admission caps the families rendered from state that is not a ledger series (distinct
	// active users per window), and those of other collectors that share it (quotas).
	admission *seriescap.Admission

	mu    sync.Mutex
	cache map[*ledger.Series]string // label text, e.g. {doc_type="pdf",tenant="a"}
}

// NewUsage prepares the families of the store's meters. pseudonymize maps a tenant's user ids
// to label values when the store keeps per-user series; user ids never appear in labels as they
// are.
func NewUsage(store *ledger.Store, pseudonymize func(tenant, user string) string) *Usage {
	u := &Usage{store: store, now: time.Now, cache: map[*ledger.Series]string{}, pseudonymize: pseudonymize,
		admission: seriescap.New(store.SeriesLimit())}
	for _, d := range store.Meters() {
		if d.Metric == nil {
			continue
		}
		def := d
		f := &family{def: &def, name: d.Metric.Name, help: d.Metric.Help, counter: d.Metric.Type == "counter",
			labels: append([]string{"tenant"}, d.Metric.Labels...)}
		if f.help == "" {
			f.help = d.Description
		}
		if store.UserLabel(d.Name) {
			if pseudonymize == nil {
				panic("collector: per-user series need a pseudonymisation function")
			}
			f.labels = append(f.labels, "user")
			f.user = true
		}
		if d.Aggregation == meter.UniqueCount {
			f.labels = []string{"tenant", "window"}
			for _, w := range d.Metric.Windows {
				f.windows = append(f.windows, parseWindow(w))
			}
		}
		u.families = append(u.families, f)
	}
	slices.SortFunc(u.families, func(a, b *family) int { return cmp.Compare(a.name, b.name) })
	return u
}

// Admission is the cap of the scrape-time families, for other collectors of the same /metrics
// (the quota gauges) to share: their folded series are counted in
// usage_exporter_series_overflow_total with the usage families'.
func (u *Usage) Admission() *seriescap.Admission { return u.admission }

func parseWindow(w string) time.Duration {
	n, _ := strconv.Atoi(w[:len(w)-1])
	if strings.HasSuffix(w, "d") {
		return time.Duration(n) * 24 * time.Hour
	}
	return time.Duration(n) * time.Hour
}

// labelText renders {a="x",b="y"} with label names sorted, values escaped.
func labelText(names, values []string) string {
	idx := make([]int, len(names))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(names[a], names[b]) })
	var b strings.Builder
	b.WriteByte('{')
	for n, i := range idx {
		if n > 0 {
			b.WriteByte(',')
		}
		b.WriteString(names[i])
		b.WriteString(`="`)
		escape(&b, values[i])
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

func escape(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(c)
		}
	}
}

type line struct {
	labels string
	value  int64
}

// Write renders the usage families in the given format (text 0.0.4 or OpenMetrics). For
// OpenMetrics it does not write the final "# EOF": the caller's encoder does.
func (u *Usage) Write(w io.Writer, openMetrics bool) error {
	var buf bytes.Buffer
	overflow := u.store.Folded()
	var lines []line
	now := u.now()
	admitted := make(map[string]int, len(u.families))
	for _, f := range u.families {
		lines = lines[:0]
		if f.windows != nil {
			cutoffs := make([]int64, len(f.windows))
			for i, d := range f.windows {
				cutoffs[i] = now.Add(-d).UnixNano()
			}
			active := u.store.ActiveCounts(f.def.Name, cutoffs)
			tenants := make([]string, 0, len(active))
			for tenant := range active {
				tenants = append(tenants, tenant)
			}
			// Admission in tenant order, so that a restart admits the same tenants.
			slices.Sort(tenants)
			var folded []int64
			foldedTenants := 0
			for _, tenant := range tenants {
				counts := active[tenant]
				if !u.admission.Admit(f.name, tenant, len(counts)) {
					foldedTenants++
					// Users belong to one tenant, so the folded tenants' counts add up.
					if folded == nil {
						folded = make([]int64, len(counts))
					}
					for i, c := range counts {
						folded[i] += c
					}
					continue
				}
				for i, c := range counts {
					lines = append(lines, line{labelText(f.labels, []string{tenant, f.def.Metric.Windows[i]}), c})
				}
			}
			for i, c := range folded {
				lines = append(lines, line{labelText(f.labels, []string{Overflow, f.def.Metric.Windows[i]}), c})
			}
			u.admission.ObserveFolded(f.name, foldedTenants*len(f.windows))
		} else {
			var folded int64
			hasFolded := false
			values := make([]string, len(f.labels))
			u.mu.Lock()
			u.store.MetricSeries(f.name, func(series []*ledger.Series) {
				for _, s := range series {
					if !s.Admitted {
						folded += s.State.Value
						hasFolded = true
						continue
					}
					text, ok := u.cache[s]
					if !ok {
						values[0] = s.Tenant
						copy(values[1:], s.Labels)
						if f.user {
							values[len(values)-1] = u.pseudonymize(s.Tenant, s.User)
						}
						text = labelText(f.labels, values)
						u.cache[s] = text
					}
					lines = append(lines, line{text, s.State.Value})
				}
			})
			u.mu.Unlock()
			if hasFolded {
				for i := range values {
					values[i] = Overflow
				}
				lines = append(lines, line{labelText(f.labels, values), folded})
			}
		}
		admitted[f.name] = len(lines)
		if len(lines) == 0 {
			continue
		}
		slices.SortFunc(lines, func(a, b line) int { return cmp.Compare(a.labels, b.labels) })
		writeHeader(&buf, f.name, f.help, f.counter, openMetrics)
		for _, l := range lines {
			buf.WriteString(f.name)
			buf.WriteString(l.labels)
			buf.WriteByte(' ')
			buf.Write(strconv.AppendInt(buf.AvailableBuffer(), l.value, 10))
			buf.WriteByte('\n')
		}
		if buf.Len() > 1<<20 {
			if _, err := w.Write(buf.Bytes()); err != nil {
				return err
			}
			buf.Reset()
		}
	}
	writeHeader(&buf, "usage_exporter_series", "Series of each usage metric, admitted under the series cap.", false, openMetrics)
	for _, f := range u.families {
		buf.WriteString(`usage_exporter_series{metric="` + f.name + `"} `)
		buf.Write(strconv.AppendInt(buf.AvailableBuffer(), int64(admitted[f.name]), 10))
		buf.WriteByte('\n')
	}
	writeHeader(&buf, "usage_exporter_series_overflow_total", "Label sets folded into the __overflow__ series of a metric because its series cap was reached.", true, openMetrics)
	// The ledger's folded series, and those folded at scrape time (active users, quotas).
	for m, n := range u.admission.Folded() {
		overflow[m] += n
	}
	names := make([]string, 0, len(overflow)+len(u.families))
	for _, f := range u.families {
		names = append(names, f.name)
	}
	for m := range overflow {
		if !slices.Contains(names, m) {
			names = append(names, m)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		buf.WriteString(`usage_exporter_series_overflow_total{metric="` + name + `"} `)
		buf.Write(strconv.AppendInt(buf.AvailableBuffer(), int64(overflow[name]), 10))
		buf.WriteByte('\n')
	}
	_, err := w.Write(buf.Bytes())
	return err
}

func writeHeader(b *bytes.Buffer, name, help string, counter, openMetrics bool) {
	typ := "gauge"
	family := name
	if counter {
		typ = "counter"
		if openMetrics {
			// OpenMetrics names the counter family without its _total sample suffix.
			family = strings.TrimSuffix(name, "_total")
		}
	}
	b.WriteString("# HELP " + family + " ")
	help = strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(help)
	if openMetrics {
		help = strings.ReplaceAll(help, `"`, `\"`)
	}
	b.WriteString(help + "\n# TYPE " + family + " " + typ + "\n")
}

// Handler serves /metrics: the usage families followed by everything gathered from reg, in
// the format the scraper negotiates (text or OpenMetrics), gzipped when accepted.
func Handler(u *Usage, reg prometheus.Gatherer, onError func(error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mfs, err := reg.Gather()
		if err != nil && onError != nil {
			onError(err)
		}
		// The usage families are rendered as text or OpenMetrics only.
		format := expfmt.NegotiateAccept(r.Header, expfmt.FmtOpenMetrics_1_0_0, expfmt.FmtOpenMetrics_0_0_1, expfmt.FmtText)
		openMetrics := format.FormatType() == expfmt.TypeOpenMetrics
		w.Header().Set("Content-Type", string(format))
		var out io.Writer = w
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
			defer gz.Close()
			out = gz
		}
		if err := u.Write(out, openMetrics); err != nil {
			if onError != nil {
				onError(err)
			}
			return
		}
		enc := expfmt.NewEncoder(out, format)
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				if onError != nil {
					onError(err)
				}
				return
			}
		}
		if c, ok := enc.(expfmt.Closer); ok {
			c.Close()
		}
	})
}
