package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/valyala/fastjson"
)

// promParsers parse Prometheus API answers. An all-tenant answer is thousands of series (5,000
// per quota gauge, 31,000 points for a month of daily usage); decoding it with encoding/json's
// reflection into maps and [2]any cost more CPU than VictoriaMetrics spent computing it, so the
// answer is parsed with fastjson and the same PromResult is built by hand.
var promParsers fastjson.ParserPool

func (c *Client) prom(ctx context.Context, path string, v url.Values) (*PromResult, error) {
	resp, err := c.Do(ctx, http.MethodGet, path, v, nil, http.Header{"Accept": {"application/json"}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", c.Service, path, err)
	}
	r, err := decodeProm(body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", c.Service, path, err)
	}
	return r, nil
}

// decodeProm reads {"status", "data": {"resultType", "result"}, "error"}: a vector or a matrix.
func decodeProm(body []byte) (*PromResult, error) {
	p := promParsers.Get()
	defer promParsers.Put(p)
	doc, err := p.ParseBytes(body)
	if err != nil {
		return nil, fmt.Errorf("decoding the answer: %w", err)
	}
	if st := string(doc.GetStringBytes("status")); st != "success" {
		return nil, fmt.Errorf("status %q: %s", st, doc.GetStringBytes("error"))
	}
	data := doc.Get("data")
	if data == nil {
		return nil, fmt.Errorf("decoding the answer: no data")
	}
	r := &PromResult{ResultType: string(data.GetStringBytes("resultType"))}
	res := data.Get("result")
	if res == nil || res.Type() == fastjson.TypeNull {
		return r, nil
	}
	items, err := res.Array()
	if err != nil {
		return nil, fmt.Errorf("decoding the answer: result: %w", err)
	}
	r.Result = make([]PromSeries, len(items))
	// Every series repeats the same few label names: one string each, not one per series.
	names := map[string]string{}
	for i, it := range items {
		s := &r.Result[i]
		m, err := it.Get("metric").Object()
		if err != nil {
			return nil, fmt.Errorf("decoding the answer: result[%d].metric: %w", i, err)
		}
		s.Metric = make(map[string]string, m.Len())
		m.Visit(func(k []byte, v *fastjson.Value) {
			if err == nil {
				var b []byte
				if b, err = v.StringBytes(); err == nil {
					name, ok := names[string(k)]
					if !ok {
						name = string(k)
						names[name] = name
					}
					s.Metric[name] = string(b)
				}
			}
		})
		if err != nil {
			return nil, fmt.Errorf("decoding the answer: result[%d].metric: %w", i, err)
		}
		if v := it.Get("value"); v != nil {
			if s.Value, err = promPair(v); err != nil {
				return nil, fmt.Errorf("decoding the answer: result[%d].value: %w", i, err)
			}
		}
		if vs := it.Get("values"); vs != nil {
			arr, err := vs.Array()
			if err != nil {
				return nil, fmt.Errorf("decoding the answer: result[%d].values: %w", i, err)
			}
			s.Values = make([][2]any, len(arr))
			for j, v := range arr {
				if s.Values[j], err = promPair(v); err != nil {
					return nil, fmt.Errorf("decoding the answer: result[%d].values[%d]: %w", i, j, err)
				}
			}
		}
	}
	return r, nil
}

// promPair reads [timestamp, "value"] as encoding/json would into [2]any: a float64 and a
// string (Sample checks both).
func promPair(v *fastjson.Value) ([2]any, error) {
	a, err := v.Array()
	if err != nil || len(a) != 2 {
		return [2]any{}, fmt.Errorf("want [time, value], got %s", v)
	}
	ts, err := a[0].Float64()
	if err != nil {
		return [2]any{}, fmt.Errorf("time: %w", err)
	}
	val, err := a[1].StringBytes()
	if err != nil {
		return [2]any{}, fmt.Errorf("value: %w", err)
	}
	return [2]any{ts, string(val)}, nil
}
