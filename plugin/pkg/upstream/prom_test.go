package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// referenceProm is how the answer decoded before decodeProm: encoding/json into PromResult.
func referenceProm(body []byte) (*PromResult, error) {
	var r struct {
		Status string     `json:"status"`
		Data   PromResult `json:"data"`
	}
	err := json.Unmarshal(body, &r)
	return &r.Data, err
}

func TestDecodePromMatchesEncodingJSON(t *testing.T) {
	var big strings.Builder
	big.WriteString(`{"status":"success","data":{"resultType":"matrix","result":[`)
	for i := range 300 {
		if i > 0 {
			big.WriteString(",")
		}
		fmt.Fprintf(&big, `{"metric":{"tenant":"tenant-%04d","meter":"ai_tokens","quote":"a\"b\\c\u00e9\ud83d\ude00"},"values":[[1762473600,"%d"],[1762477200.5,"NaN"],[1762480800,"+Inf"],[1762484400,"-1.5e-3"]]}`, i, i*7)
	}
	big.WriteString(`]},"stats":{"seriesFetched":"300","executionTimeMsec":3}}`)
	for _, body := range []string{
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"tenant":"acme","meter":"ai_tokens"},"value":[1762560000,"83000"]},{"metric":{},"value":[1762560000.25,"0.8"]}]}}`,
		`{"status":"success","data":{"resultType":"matrix","result":[]}}`,
		`{"status":"success","data":{"resultType":"vector","result":null}}`,
		big.String(),
	} {
		want, err := referenceProm([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeProm([]byte(body))
		if err != nil {
			t.Fatalf("%.80s: %v", body, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%.80s:\n got %+v\nwant %+v", body, got, want)
		}
	}
	for _, bad := range []string{
		`{"status":"error","errorType":"bad_data","error":"parse error at char 3"}`,
		`{"status":"success"}`,
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":1},"values":[]}]}}`,
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":["1762560000","1"]}]}}`,
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1762560000,1]}]}}`,
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1762560000]]}]}}`,
		`{"status":"success","data":`,
	} {
		if _, err := decodeProm([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestQueryDecodesVictoriaMetricsAnswers(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/query", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("query") == "bad(" {
			_, _ = w.Write([]byte(`{"status":"error","error":"unparsable"}`))
			return
		}
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"tenant":"acme"},"value":[1762560000,"3"]}]}}`))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c, err := New("victoriametrics", srv.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Query(context.Background(), "x", time.Unix(1762560000, 0))
	if err != nil || len(r.Result) != 1 || r.Result[0].Metric["tenant"] != "acme" {
		t.Fatalf("%+v %v", r, err)
	}
	if _, v, err := Sample(r.Result[0].Value); err != nil || v != 3 {
		t.Errorf("sample %v %v", v, err)
	}
	if _, err := c.Query(context.Background(), "bad(", time.Now()); err == nil || !strings.Contains(err.Error(), "unparsable") {
		t.Errorf("error answer: %v", err)
	}
}

func BenchmarkDecodeProm(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"status":"success","data":{"resultType":"vector","result":[`)
	for i := range 5000 {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `{"metric":{"meter":"ai_tokens","tenant":"tenant-%04d"},"value":[1795735721,"%d"]}`, i, i*13)
	}
	sb.WriteString(`]}}`)
	body := []byte(sb.String())
	b.Run("fastjson", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodeProm(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			if _, err := referenceProm(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
