// Package rules holds the vmalert recording and alerting rules (*.yml) and their vmalert-tool
// unit tests (tests/*_test.yml). The package has no code: its Go test checks the conventions the
// YAML cannot check by itself (names, labels, annotations, runbooks, test coverage). The rules
// themselves are run by `make test-rules`.
package rules
