package usagectl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// errNoStore is the refusal of an offline command (ledger verify, audit verify, ...) whose
// --storage.path holds no store: a verifier must never create what it verifies.
var errNoStore = errors.New("no store")

// openExisting opens the ledger at path for an offline command, refusing (errNoStore) when
// there is no store there rather than creating an empty one.
func openExisting(ctx context.Context, path string, cfg *config.Config, logger *slog.Logger) (*ledger.Store, error) {
	desc, err := pebble.Peek(path, vfs.Default)
	if err != nil || !desc.Exists {
		why := "the directory holds no store"
		if err != nil {
			why = err.Error()
		}
		return nil, fmt.Errorf("%w at --storage.path=%s (%s): give the exporter's --storage.path", errNoStore, path, why)
	}
	s, err := ledger.Open(ctx, ledger.Options{Path: path, Meters: cfg.Meters, SeriesLimit: cfg.Metrics.SeriesLimit,
		PerUserLabels: cfg.Metrics.PerUserLabels, Logger: logger})
	if err != nil {
		return nil, err // it names the lock's holder, or the damage
	}
	return s, nil
}
