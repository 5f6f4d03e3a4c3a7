package cluster_test

import (
	"os"
	"testing"

	"github.com/usagemeter/usagemeter/exporter/server"
	"github.com/usagemeter/usagemeter/usagectl"
)

// The fault tests need real processes to SIGKILL: the test binary runs itself as a
// usage-exporter replica, or as usagectl, when asked through the environment.
func TestMain(m *testing.M) {
	switch os.Getenv("USAGEMETER_TEST_ROLE") {
	case "usage-exporter":
		os.Exit(server.Main(os.Args[1:]))
	case "usagectl":
		os.Exit(usagectl.Main(os.Args[1:]))
	}
	os.Exit(m.Run())
}
