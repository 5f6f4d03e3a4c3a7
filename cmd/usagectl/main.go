// Command usagectl administers usagemeter: it simulates workloads, verifies and rebuilds the
// ledger, and (through the exporter's API) runs billing and reports. See README.md.
package main

import (
	"os"

	"github.com/usagemeter/usagemeter/usagectl"
)

func main() {
	os.Exit(usagectl.Main(os.Args[1:]))
}
