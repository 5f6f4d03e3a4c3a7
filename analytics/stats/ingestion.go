package stats

import (
	"context"
	"math"
	"sort"
	"time"

	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// SourceStats describes one ingest source of a tenant over a range.
type SourceStats struct {
	Source        string     `json:"source"`
	Jobs          int64      `json:"jobs"`
	Bytes         int64      `json:"bytes"`
	Records       int64      `json:"records"`
	DurationMS    int64      `json:"duration_ms"`
	AvgDurationMS float64    `json:"avg_duration_ms"` // duration_ms / jobs
	JobsPerDay    float64    `json:"jobs_per_day"`
	ActiveHours   int        `json:"active_hours"` // hours with at least one job
	MeanHourly    float64    `json:"mean_hourly_jobs"`
	PeakHourly    int64      `json:"peak_hourly_jobs"`
	PeakHour      *time.Time `json:"peak_hour,omitempty"`
	// BurstHours are the hours whose jobs exceed mean + 3 standard deviations of the hourly
	// series (and at least twice the mean): arrivals bunched far beyond the usual rate.
	BurstHours []time.Time `json:"burst_hours"`
	LastJob    *time.Time  `json:"last_job,omitempty"` // start of the last hour with a job
	// Slow: the source's mean job duration is more than twice the tenant's.
	Slow bool `json:"slow"`
	// Silent: the source had jobs in the range but none in its last 24 hours.
	Silent bool `json:"silent"`
}

// Ingestion is a tenant's ingestion pattern over [From, To).
type Ingestion struct {
	Tenant        string        `json:"tenant"`
	From          time.Time     `json:"from"`
	To            time.Time     `json:"to"`
	Jobs          int64         `json:"jobs"`
	AvgDurationMS float64       `json:"avg_duration_ms"`
	Sources       []SourceStats `json:"sources"`
	// Failures are not measured: the contract's ingest.completed reports only completed jobs.
	Failures string `json:"failures"`
}

// Ingest analyses ingest_jobs, ingest_bytes, ingest_records and ingest_duration_ms by source.
func Ingest(ctx context.Context, st *ledger.Store, tenant string, from, to time.Time) (Ingestion, error) {
	from, to = HourFloor(from), HourFloor(to)
	hours := int(to.Sub(from) / time.Hour)
	if hours < 1 {
		return Ingestion{}, badf("the range must hold at least one hour")
	}
	in := Ingestion{Tenant: tenant, From: from, To: to,
		Failures: "not measured: ingest.completed events report completed jobs only; a source that stops reporting is flagged silent"}
	src := map[string]*SourceStats{}
	get := func(s string) *SourceStats {
		if src[s] == nil {
			src[s] = &SourceStats{Source: s, BurstHours: []time.Time{}}
		}
		return src[s]
	}
	for _, m := range []string{"ingest_bytes", "ingest_records", "ingest_duration_ms"} {
		rows, err := st.Usage(ctx, ledger.Query{Meter: m, Tenant: tenant, From: from, To: to, GroupBy: []string{"source"}})
		if err != nil {
			return in, err
		}
		for _, r := range rows {
			s := get(r.Group["source"])
			switch m {
			case "ingest_bytes":
				s.Bytes += r.Value
			case "ingest_records":
				s.Records += r.Value
			default:
				s.DurationMS += r.Value
			}
		}
	}
	rows, err := st.Usage(ctx, ledger.Query{Meter: "ingest_jobs", Tenant: tenant, From: from, To: to, GroupBy: []string{"source"}, Window: ledger.WindowHour})
	if err != nil {
		return in, err
	}
	hourly := map[string][]int64{}
	for _, r := range rows {
		s := get(r.Group["source"])
		if hourly[s.Source] == nil {
			hourly[s.Source] = make([]int64, hours)
		}
		hourly[s.Source][int(r.WindowStart.Sub(from)/time.Hour)] += r.Value
	}
	var totalDur int64
	for name, s := range src {
		h := hourly[name]
		var sum, sq float64
		for i, v := range h {
			s.Jobs += v
			sum += float64(v)
			sq += float64(v) * float64(v)
			if v > 0 {
				s.ActiveHours++
				t := from.Add(time.Duration(i) * time.Hour)
				s.LastJob = &t
				if v > s.PeakHourly {
					s.PeakHourly = v
					s.PeakHour = &t
				}
			}
		}
		s.MeanHourly = sum / float64(hours)
		sd := math.Sqrt(math.Max(0, sq/float64(hours)-s.MeanHourly*s.MeanHourly))
		for i, v := range h {
			if float64(v) > s.MeanHourly+3*sd && float64(v) >= 2*s.MeanHourly && v > 1 {
				s.BurstHours = append(s.BurstHours, from.Add(time.Duration(i)*time.Hour))
			}
		}
		if s.Jobs > 0 {
			s.AvgDurationMS = float64(s.DurationMS) / float64(s.Jobs)
		}
		s.JobsPerDay = float64(s.Jobs) / (float64(hours) / 24)
		s.Silent = s.Jobs > 0 && s.LastJob != nil && to.Sub(*s.LastJob) > 24*time.Hour
		in.Jobs += s.Jobs
		totalDur += s.DurationMS
	}
	if in.Jobs > 0 {
		in.AvgDurationMS = float64(totalDur) / float64(in.Jobs)
	}
	for _, s := range src {
		s.Slow = s.Jobs > 0 && in.AvgDurationMS > 0 && s.AvgDurationMS > 2*in.AvgDurationMS
		in.Sources = append(in.Sources, *s)
	}
	sort.Slice(in.Sources, func(i, j int) bool { return in.Sources[i].Source < in.Sources[j].Source })
	return in, nil
}
