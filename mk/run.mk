# `make run`: the local stack (deploy/localstack). It builds nothing itself: `build` and `tools`
# provide the binaries, and the supervisor is compiled into bin/ like the rest.
.PHONY: run
run: build tools ## start the local stack on 127.0.0.1; Ctrl-C stops it, state stays in .stack/
	$(GO) build -o $(BIN)/localstack ./deploy/localstack/cmd/localstack
	$(BIN)/localstack -root $(CURDIR) $(RUN_ARGS)
