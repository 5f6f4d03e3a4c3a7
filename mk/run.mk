# `make run`: the local stack (deploy/localstack). It builds nothing itself: `build` and `tools`
# provide the binaries, and the supervisor is compiled into bin/ like the rest.
.PHONY: run
run: build tools ## start the local stack on 127.0.0.1; Ctrl-C stops it, state stays in .stack/
	$(GO) build -o $(BIN)/localstack ./deploy/localstack/cmd/localstack
	$(BIN)/localstack -root $(CURDIR) $(RUN_ARGS)

# `make run-cluster`: the same stack with three NATS JetStream servers and two exporter replicas
# in place of the single exporter (docs/cluster.md); its own state directory.
.PHONY: run-cluster
run-cluster: build tools ## start the cluster topology on 127.0.0.1 (3 NATS, 2 replicas); Ctrl-C stops it, state in .stack-cluster/
	$(GO) build -o $(BIN)/localstack ./deploy/localstack/cmd/localstack
	$(BIN)/localstack -root $(CURDIR) -cluster -state .stack-cluster $(RUN_ARGS)
