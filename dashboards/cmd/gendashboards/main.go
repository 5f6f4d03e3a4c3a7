// Command gendashboards writes usagemeter's Grafana dashboards (package dashboards) as JSON.
// `make dashboards` runs it; the output is committed.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/usagemeter/usagemeter/dashboards"
)

func main() {
	out := flag.String("out", "dashboards/json", "directory to write the dashboards' JSON into")
	flag.Parse()
	if err := dashboards.Write(*out); err != nil {
		fmt.Fprintf(os.Stderr, "gendashboards: %v\n", err)
		os.Exit(1)
	}
}
