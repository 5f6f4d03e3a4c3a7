// Package pluginhost launches the usagemeter plugin binary the way Grafana's backend plugin
// manager does (hashicorp go-plugin, the grafana_plugin_type=datasource handshake, protocol
// version 2, gRPC only, the plugin set {diagnostics, resource, data, stream}), so that tests
// outside Grafana talk to the real binary over the real protocol.
package pluginhost

import (
	"io"
	"os/exec"
	"testing"

	"github.com/grafana/grafana-plugin-sdk-go/backend/grpcplugin"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
)

// Clients are the plugin's services as Grafana dials them.
type Clients struct {
	Data        pluginv2.DataClient
	Diagnostics pluginv2.DiagnosticsClient
	Resource    pluginv2.ResourceClient
}

// Launch starts bin and returns its clients and process id; the process is killed when the
// test ends.
func Launch(t testing.TB, bin string) (Clients, int) {
	t.Helper()
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig: goplugin.HandshakeConfig{
			ProtocolVersion:  grpcplugin.ProtocolVersion,  // 2
			MagicCookieKey:   grpcplugin.MagicCookieKey,   // grafana_plugin_type
			MagicCookieValue: grpcplugin.MagicCookieValue, // datasource
		},
		VersionedPlugins: map[int]goplugin.PluginSet{
			grpcplugin.ProtocolVersion: {
				"diagnostics": &grpcplugin.DiagnosticsGRPCPlugin{},
				"resource":    &grpcplugin.ResourceGRPCPlugin{},
				"data":        &grpcplugin.DataGRPCPlugin{},
				"stream":      &grpcplugin.StreamGRPCPlugin{},
			},
		},
		Cmd:              exec.Command(bin),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "plugin", Level: hclog.Warn, Output: io.Discard}),
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("go-plugin handshake: %v", err)
	}
	if v := client.NegotiatedVersion(); v != 2 {
		t.Fatalf("negotiated protocol version %d, want 2", v)
	}
	var c Clients
	for _, name := range []string{"data", "diagnostics", "resource"} {
		raw, err := rpc.Dispense(name)
		if err != nil {
			t.Fatalf("dispense %s: %v", name, err)
		}
		switch name {
		case "data":
			c.Data = raw.(pluginv2.DataClient)
		case "diagnostics":
			c.Diagnostics = raw.(pluginv2.DiagnosticsClient)
		case "resource":
			c.Resource = raw.(pluginv2.ResourceClient)
		}
	}
	return c, client.ReattachConfig().Pid
}
