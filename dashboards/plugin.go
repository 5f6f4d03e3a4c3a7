package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
)

// PluginType is the type id of the usagemeter Grafana datasource plugin (plugin/).
const PluginType = "usagemeter-usagemeter-datasource"

// QueryTypes are the plugin's query types. The plugin serves exactly these; a panel asking for any
// other would show an error, so the generator refuses to build one.
var QueryTypes = []string{
	"usage_summary", "usage_timeseries", "top_users", "feature_adoption", "user_activity",
	"storage_documents", "ingestion", "invoices", "billing_kpis", "forecast", "anomalies",
	"insights", "audit",
}

// PluginQuery is the query model of the usagemeter plugin. Tenant and meter usually hold template
// variables ($tenant, $meter); GroupBy is a comma list of dimensions, as in /v1/usage's group_by;
// Period is the aggregation window (hour, day, month), as in /v1/usage's window.
type PluginQuery struct {
	RefID      string                `json:"refId"`
	Hide       *bool                 `json:"hide,omitempty"`
	Datasource *common.DataSourceRef `json:"datasource,omitempty"`
	QueryType  string                `json:"queryType"`
	Tenant     string                `json:"tenant,omitempty"`
	Meter      string                `json:"meter,omitempty"`
	GroupBy    string                `json:"groupBy,omitempty"`
	Period     string                `json:"period,omitempty"`
}

// ImplementsDataqueryVariant marks PluginQuery as a panel target for the SDK.
func (PluginQuery) ImplementsDataqueryVariant() {}

// DataqueryType is the plugin's type id.
func (PluginQuery) DataqueryType() string { return PluginType }

// Equals compares two queries field by field.
func (q PluginQuery) Equals(other variants.Dataquery) bool {
	o, ok := other.(PluginQuery)
	return ok && reflect.DeepEqual(q, o)
}

// Validate refuses query types the plugin does not serve.
func (q PluginQuery) Validate() error {
	if !slices.Contains(QueryTypes, q.QueryType) {
		return fmt.Errorf("plugin query type %q is not one of %v", q.QueryType, QueryTypes)
	}
	return nil
}

// PluginQueryVariantConfig lets the SDK unmarshal plugin targets when reading dashboards back.
func PluginQueryVariantConfig() variants.DataqueryConfig {
	return variants.DataqueryConfig{
		Identifier: PluginType,
		DataqueryUnmarshaler: func(raw []byte) (variants.Dataquery, error) {
			q := PluginQuery{}
			if err := json.Unmarshal(raw, &q); err != nil {
				return nil, err
			}
			return q, nil
		},
		StrictDataqueryUnmarshaler: func(raw []byte) (variants.Dataquery, error) {
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			q := PluginQuery{}
			if err := dec.Decode(&q); err != nil {
				return nil, err
			}
			return q, q.Validate()
		},
	}
}

var _ cog.Builder[variants.Dataquery] = pluginQueryBuilder{}

// pluginQueryBuilder adapts a PluginQuery to the SDK's target builders.
type pluginQueryBuilder struct{ q PluginQuery }

func (b pluginQueryBuilder) Build() (variants.Dataquery, error) {
	if err := b.q.Validate(); err != nil {
		// The SDK's panel builders expect cog.BuildErrors and type-assert on them.
		return nil, cog.MakeBuildErrors("pluginQuery", err)
	}
	return b.q, nil
}
