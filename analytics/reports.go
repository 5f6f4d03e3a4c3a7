package analytics

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/analytics/report"
	"github.com/usagemeter/usagemeter/exporter/api/problem"
	"github.com/usagemeter/usagemeter/exporter/api/route"
)

func (s *Service) source() *report.Source {
	src := &report.Source{Store: s.Store}
	if s.Config != nil {
		src.TenantName = func(tenant string) string {
			t, _ := s.Config().Tenant(tenant)
			return t.Name
		}
	}
	return src
}

// definitionFromQuery reads a report definition from query parameters: format, tenant (or
// tenants), meter, group_by, window, from/to or month or last, and filter=dim:v1|v2.
func definitionFromQuery(r *http.Request, kind string) (report.Definition, error) {
	p := &params{r: r}
	d := report.Definition{Kind: kind, Format: p.str("format"), Meters: p.list("meter"), GroupBy: p.list("group_by"), Window: p.str("window")}
	d.Tenants = p.list("tenants")
	if t := route.Tenant(r); t != "" {
		d.Tenants = []string{t}
	}
	d.Period = report.Period{From: p.time("from", time.Time{}), To: p.time("to", time.Time{}), Month: p.str("month"), Last: p.str("last")}
	for _, f := range r.URL.Query()["filter"] {
		dim, vals, ok := strings.Cut(f, ":")
		if !ok || dim == "" || vals == "" {
			return d, &paramError{"filter", fmt.Sprintf("%q: want dimension:value1|value2", f)}
		}
		if d.Filters == nil {
			d.Filters = map[string][]string{}
		}
		d.Filters[dim] = append(d.Filters[dim], strings.Split(vals, "|")...)
	}
	if p.err != nil {
		return d, p.err
	}
	if err := d.Check(); err != nil {
		return d, fmt.Errorf("%w: %v", errBadReport, err)
	}
	return d, nil
}

// checkReportAccess applies the per-user permission to definitions that group or filter by user.
// The guard authorized the route for the query's tenant (or for all tenants); a definition
// naming tenants must name exactly that tenant when the query has one.
func (s *Service) checkReportAccess(r *http.Request, d *report.Definition) error {
	if t := route.Tenant(r); t != "" && !(len(d.Tenants) == 1 && d.Tenants[0] == t) {
		if len(d.Tenants) == 0 {
			d.Tenants = []string{t}
		} else {
			return fmt.Errorf("%w: the definition's tenants %v differ from the request's tenant %q", errBadReport, d.Tenants, t)
		}
	}
	if !d.UsesUsers() {
		return nil
	}
	if len(d.Tenants) == 0 {
		return s.authorizeUsers(r, "")
	}
	for _, t := range d.Tenants {
		if err := s.authorizeUsers(r, t); err != nil {
			return err
		}
	}
	return nil
}

func filename(d *report.Definition, now time.Time) string {
	name := d.Name
	if name == "" {
		name = d.Kind
	}
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, name)
	return fmt.Sprintf("%s-%s.%s", name, now.Format("20060102T1504Z"), d.Format)
}

func startDownload(w http.ResponseWriter, d *report.Definition, now time.Time) {
	w.Header().Set("Content-Type", report.ContentType(d.Format))
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, filename(d, now)))
	w.Header().Set("X-Content-Type-Options", "nosniff")
}

// flushWriter pushes streamed reports to the client as they are written.
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		_ = f.rc.Flush()
	}
	return n, err
}

func (s *Service) serve(w http.ResponseWriter, r *http.Request, d report.Definition) {
	now := s.now()
	if err := s.checkReportAccess(r, &d); err != nil {
		s.fail(w, r, err)
		return
	}
	if unknown := s.unknownTenants(d.Tenants); len(unknown) > 0 {
		problem.UnknownTenant(w, unknown...)
		return
	}
	switch d.Kind {
	case report.KindUsage:
		src := s.source()
		if err := src.Validate(&d, now); err != nil {
			s.fail(w, r, fmt.Errorf("%w: %v", errBadReport, err))
			return
		}
		startDownload(w, &d, now)
		tb, err := report.NewTables(d.Format, flushWriter{w, http.NewResponseController(w)}, reportTitle(&d), now)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		st, err := src.Usage(r.Context(), d, now, tb)
		if err != nil {
			s.log().Error("usage report failed while streaming", "err", err, "rows", st.Rows)
		}
		if cerr := tb.Close(err); cerr != nil {
			s.log().Debug("usage report: client went away", "err", cerr)
		}
	case report.KindExecutive:
		x, err := s.source().ExecutiveSummary(r.Context(), d.Tenants, now, s.Engine())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		startDownload(w, &d, now)
		if d.Format == report.PDF {
			if err := x.WritePDF(w); err != nil {
				s.log().Error("executive summary PDF failed", "err", err)
			}
			return
		}
		if err := writeTables(w, &d, now, x.WriteTables); err != nil {
			s.log().Error("executive summary failed", "err", err)
		}
	case report.KindCompliance:
		from, to, err := d.Period.Resolve(now)
		if err != nil {
			s.fail(w, r, fmt.Errorf("%w: %v", errBadReport, err))
			return
		}
		tenant := ""
		if len(d.Tenants) > 1 {
			s.fail(w, r, fmt.Errorf("%w: a compliance report covers one tenant or all", errBadReport))
			return
		} else if len(d.Tenants) == 1 {
			tenant = d.Tenants[0]
		}
		c, err := s.source().ComplianceReport(r.Context(), tenant, from, to, now, s.retention(), s.Audit, s.complianceScope(r))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		startDownload(w, &d, now)
		if err := writeTables(w, &d, now, c.WriteTables); err != nil {
			s.log().Error("compliance report failed", "err", err)
		}
	}
}

func reportTitle(d *report.Definition) string {
	t := map[string]string{report.KindUsage: "Usage report", report.KindExecutive: "Executive summary", report.KindCompliance: "Compliance report"}[d.Kind]
	if d.Name != "" {
		t += ": " + d.Name
	}
	return t
}

func writeTables(w io.Writer, d *report.Definition, now time.Time, fill func(report.Tables) error) error {
	tb, err := report.NewTables(d.Format, w, reportTitle(d), now)
	if err != nil {
		return err
	}
	err = fill(tb)
	if cerr := tb.Close(err); err == nil {
		err = cerr
	}
	return err
}

func (s *Service) usageReport(w http.ResponseWriter, r *http.Request) {
	d, err := definitionFromQuery(r, report.KindUsage)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.serve(w, r, d)
}

func (s *Service) executiveReport(w http.ResponseWriter, r *http.Request) {
	d, err := definitionFromQuery(r, report.KindExecutive)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.serve(w, r, d)
}

func (s *Service) complianceReport(w http.ResponseWriter, r *http.Request) {
	d, err := definitionFromQuery(r, report.KindCompliance)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if d.Period == (report.Period{}) {
		d.Period.Last = "month"
	}
	s.serve(w, r, d)
}

// definedReport runs a report definition posted as YAML or JSON; ?format= overrides its format.
func (s *Service) definedReport(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		s.fail(w, r, &paramError{"body", err.Error()})
		return
	}
	d, err := report.Parse(body)
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: %v", errBadReport, err))
		return
	}
	if f := r.URL.Query().Get("format"); f != "" {
		d.Format = f
		if err := report.CheckFormat(f); err != nil {
			s.fail(w, r, fmt.Errorf("%w: %v", errBadReport, err))
			return
		}
	}
	s.serve(w, r, d)
}

// complianceScope is what the compliance report may show its reader: everything to whoever may
// read the whole audit trail (platform admins), else only what concerns the report's tenant.
// Any caller may ask for less with scope=tenant: a proxy that renders with its own token (the
// Grafana plugin) does so for its users; nothing widens the scope.
func (s *Service) complianceScope(r *http.Request) report.Scope {
	if r.URL.Query().Get("scope") == "tenant" {
		return report.ScopeTenant
	}
	if s.May == nil || s.May(r, route.ActionAuditRead, "") {
		return report.ScopeFull
	}
	return report.ScopeTenant
}

// retention is the configuration's retention section (nil without one).
func (s *Service) retention() *yaml.Node {
	if s.Config == nil {
		return nil
	}
	c := s.Config()
	if c == nil || c.Retention.Kind == 0 {
		return nil
	}
	return &c.Retention
}
