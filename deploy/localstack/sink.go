package localstack

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// WebhookMessage is the body Alertmanager POSTs to a webhook receiver (version 4).
type WebhookMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	Status            string            `json:"status"` // firing or resolved
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []WebhookAlert    `json:"alerts"`
}

// WebhookAlert is one alert of a WebhookMessage.
type WebhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// AlertSink stands in for the pager and the team chat of deploy/alertmanager/alertmanager.yml:
// it logs every notification, so `make run` shows what would have paged whom.
type AlertSink struct {
	Logger *slog.Logger
}

// ServeHTTP handles POST /<receiver path> with an Alertmanager webhook body.
func (s AlertSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an Alertmanager webhook message", http.StatusMethodNotAllowed)
		return
	}
	var msg WebhookMessage
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20)).Decode(&msg); err != nil {
		s.Logger.Warn("alert sink: undecodable notification", "path", r.URL.Path, "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	channel := strings.ToUpper(strings.Trim(r.URL.Path, "/"))
	for _, a := range msg.Alerts {
		s.Logger.Info(channel+" "+a.Status,
			"alert", a.Labels["alertname"], "severity", a.Labels["severity"],
			"tenant", a.Labels["tenant"], "meter", a.Labels["meter"],
			"summary", a.Annotations["summary"])
	}
	w.WriteHeader(http.StatusOK)
}
