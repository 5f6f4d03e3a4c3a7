# Cluster mode (docs/cluster.md): the ledger as a state machine on a replicated NATS JetStream log.

# `make run-cluster`: the local stack with three NATS JetStream servers and two exporter replicas in
# place of the single exporter; its own state directory.
.PHONY: run-cluster bench-cluster
run-cluster: build tools ## start the cluster topology on 127.0.0.1 (3 NATS, 2 replicas); Ctrl-C stops it, state in .stack-cluster/
	$(GO) build -o $(BIN)/localstack ./deploy/localstack/cmd/localstack
	$(BIN)/localstack -root $(CURDIR) -cluster -state .stack-cluster $(RUN_ARGS)

bench: bench-cluster
bench-cluster: build-go tools ## cluster ingest (3 NATS, 2 replicas) vs a single node in the same run, ack p50/p99, catch-up after 60 s down
	@mkdir -p bench-results
	$(GO) run ./bench/cluster -out bench-results/cluster.tsv
