package dashboards

import (
	"slices"
	"testing"

	plugin "github.com/usagemeter/usagemeter/plugin/pkg/usagemeter"
)

// TestQueryTypesAreThePluginsOwn: the query types the dashboards may use are exactly those the
// plugin's backend answers, so a type renamed or added there fails here, not in a panel.
func TestQueryTypesAreThePluginsOwn(t *testing.T) {
	mine, theirs := slices.Clone(QueryTypes), plugin.QueryTypes()
	slices.Sort(mine)
	slices.Sort(theirs)
	if !slices.Equal(mine, theirs) {
		t.Fatalf("dashboards know query types %v, the plugin answers %v", mine, theirs)
	}
}
