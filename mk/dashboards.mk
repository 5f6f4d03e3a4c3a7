# Dashboards as code (dashboards/) and the deployment files that carry copies of them.
#
# `make dashboards` regenerates dashboards/json/*.json from the Go generator, then refreshes the
# copies that deploy/kubernetes/base needs (kustomize reads no file outside its directory): the
# dashboards, rules/*.yml, the Alertmanager config and the Grafana provisioning. Commit the result.
# `make test` needs nothing extra: dashboards/*_test.go and deploy/*_test.go run in
# `go test ./...` and fail when the JSON or a copy is stale, and lint and validate them.
.PHONY: dashboards
dashboards: ## regenerate dashboards/json and refresh deploy/kubernetes/base's copies
	$(GO) run ./dashboards/cmd/gendashboards -out dashboards/json
	$(GO) test -count=1 -run '^TestKustomizeCopiesAreCurrent$$' ./deploy/ -update
