// Package deploy holds the deployment files of usagemeter (Docker Compose, Kubernetes,
// Alertmanager, Grafana provisioning, the local stack) and the offline tests that validate them:
// every Kubernetes object decoded strictly into its k8s.io/api type, every kustomization's
// references, and the compose file against the compose-spec schema.
package deploy
