// Command gpx_usagemeter is the usagemeter Grafana datasource plugin's backend. Grafana starts
// it and talks to it over hashicorp/go-plugin (gRPC); it is not meant to be run by hand.
package main

import (
	"os"

	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	"github.com/usagemeter/usagemeter/plugin/pkg/usagemeter"
)

func main() {
	if err := datasource.Manage(usagemeter.PluginID, usagemeter.NewDatasource, datasource.ManageOpts{}); err != nil {
		log.DefaultLogger.Error("plugin exited", "err", err.Error())
		os.Exit(1)
	}
}
