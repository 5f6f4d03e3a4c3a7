package meter

// userEvents are the event types that carry a user, and so count as activity.
var userEvents = []string{"document.created", "document.deleted", "ai.tokens", "user.login", "feature.used", "ingest.completed"}

// Defaults returns the built-in meters: they cover every event type of the contract and every
// metric of it. A config file with a meters section replaces them.
func Defaults() []Def {
	active := make([]Binding, 0, len(userEvents))
	for _, t := range userEvents {
		active = append(active, Binding{Type: t, Value: "user"})
	}
	return []Def{
		{
			Name: "documents", Description: "Documents held: created minus deleted.", Unit: "documents",
			Kind: Stock, Aggregation: Count,
			Events:     []Binding{{Type: "document.created"}, {Type: "document.deleted", Sign: -1}},
			Dimensions: []string{"doc_type", "user"},
			Metric:     &Metric{Name: "usage_documents", Type: "gauge", Help: "Documents held per tenant and document type.", Labels: []string{"doc_type"}},
		},
		{
			Name: "document_bytes", Description: "Bytes of the documents held.", Unit: "bytes",
			Kind: Stock, Aggregation: Sum,
			Events:     []Binding{{Type: "document.created", Value: "bytes"}, {Type: "document.deleted", Value: "bytes", Sign: -1}},
			Dimensions: []string{"doc_type", "user"},
			Metric:     &Metric{Name: "usage_document_bytes", Type: "gauge", Help: "Bytes of the documents held per tenant and document type.", Labels: []string{"doc_type"}},
		},
		{
			Name: "documents_created", Description: "Documents created.", Unit: "documents",
			Kind: Flow, Aggregation: Count,
			Events:     []Binding{{Type: "document.created"}},
			Dimensions: []string{"doc_type", "user"},
			Metric:     &Metric{Name: "usage_documents_created_total", Type: "counter", Help: "Documents created per tenant and document type.", Labels: []string{"doc_type"}},
		},
		{
			Name: "storage_bytes", Description: "Storage held: the latest reading per storage class.", Unit: "bytes",
			Kind: Stock, Aggregation: Latest,
			Events:     []Binding{{Type: "storage.measured", Value: "bytes"}},
			Dimensions: []string{"storage_class"},
			Metric:     &Metric{Name: "usage_storage_bytes", Type: "gauge", Help: "Latest storage reading per tenant and storage class.", Labels: []string{"storage_class"}},
		},
		{
			Name: "ai_tokens", Description: "AI tokens, input and output.", Unit: "tokens",
			Kind: Flow, Aggregation: Sum,
			Events: []Binding{
				{Type: "ai.tokens", Value: "input_tokens", Set: map[string]string{"direction": "input"}},
				{Type: "ai.tokens", Value: "output_tokens", Set: map[string]string{"direction": "output"}},
			},
			Dimensions: []string{"direction", "feature", "model", "user"},
			Metric:     &Metric{Name: "usage_ai_tokens_total", Type: "counter", Help: "AI tokens per tenant, feature, model and direction.", Labels: []string{"feature", "model", "direction"}},
		},
		{
			Name: "ai_requests", Description: "AI requests.", Unit: "requests",
			Kind: Flow, Aggregation: Count,
			Events:     []Binding{{Type: "ai.tokens"}},
			Dimensions: []string{"feature", "model", "user"},
			Metric:     &Metric{Name: "usage_ai_requests_total", Type: "counter", Help: "AI requests per tenant, feature and model.", Labels: []string{"feature", "model"}},
		},
		{
			Name: "ingest_bytes", Description: "Bytes ingested.", Unit: "bytes",
			Kind: Flow, Aggregation: Sum,
			Events:     []Binding{{Type: "ingest.completed", Value: "bytes"}},
			Dimensions: []string{"source", "user"},
			Metric:     &Metric{Name: "usage_ingest_bytes_total", Type: "counter", Help: "Bytes ingested per tenant and source.", Labels: []string{"source"}},
		},
		{
			Name: "ingest_records", Description: "Records ingested.", Unit: "records",
			Kind: Flow, Aggregation: Sum,
			Events:     []Binding{{Type: "ingest.completed", Value: "records"}},
			Dimensions: []string{"source", "user"},
			Metric:     &Metric{Name: "usage_ingest_records_total", Type: "counter", Help: "Records ingested per tenant and source.", Labels: []string{"source"}},
		},
		{
			Name: "ingest_jobs", Description: "Ingest jobs completed.", Unit: "jobs",
			Kind: Flow, Aggregation: Count,
			Events:     []Binding{{Type: "ingest.completed"}},
			Dimensions: []string{"source", "user"},
			Metric:     &Metric{Name: "usage_ingest_jobs_total", Type: "counter", Help: "Ingest jobs completed per tenant and source.", Labels: []string{"source"}},
		},
		{
			Name: "ingest_duration_ms", Description: "Time spent in ingest jobs.", Unit: "milliseconds",
			Kind: Flow, Aggregation: Sum,
			Events:     []Binding{{Type: "ingest.completed", Value: "duration_ms"}},
			Dimensions: []string{"source"},
		},
		{
			Name: "logins", Description: "User logins.", Unit: "logins",
			Kind: Flow, Aggregation: Count,
			Events:     []Binding{{Type: "user.login"}},
			Dimensions: []string{"user"},
			Metric:     &Metric{Name: "usage_user_logins_total", Type: "counter", Help: "User logins per tenant."},
		},
		{
			Name: "session_seconds", Description: "Length of user sessions.", Unit: "seconds",
			Kind: Flow, Aggregation: Sum,
			Events:     []Binding{{Type: "user.login", Value: "session_seconds"}},
			Dimensions: []string{"user"},
			Metric:     &Metric{Name: "usage_user_session_seconds_total", Type: "counter", Help: "Seconds of user sessions per tenant."},
		},
		{
			Name: "feature_uses", Description: "Feature uses.", Unit: "uses",
			Kind: Flow, Aggregation: Count,
			Events:     []Binding{{Type: "feature.used"}},
			Dimensions: []string{"feature", "user"},
			Metric:     &Metric{Name: "usage_feature_uses_total", Type: "counter", Help: "Feature uses per tenant and feature.", Labels: []string{"feature"}},
		},
		{
			Name: "active_users", Description: "Distinct active users.", Unit: "users",
			Kind: Stock, Aggregation: UniqueCount,
			Events: active,
			Metric: &Metric{Name: "usage_active_users", Type: "gauge", Help: "Distinct users active per tenant over trailing windows.", Windows: []string{"1d", "7d", "30d"}},
		},
	}
}
