// Command usage-exporter ingests usage events into an exact, durable ledger and exposes
// per-tenant Prometheus metrics. See README.md.
package main

import (
	"os"

	"github.com/usagemeter/usagemeter/exporter/server"
)

func main() {
	os.Exit(server.Main(os.Args[1:]))
}
