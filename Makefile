# privateapp-operator. `make help` lists the targets.

KUBEBUILDER_ASSETS ?= $(CURDIR)/bin/k8s
export KUBEBUILDER_ASSETS
CONTROLLER_GEN ?= go tool -modfile=go.tool.mod controller-gen
OPENAPI_GEN ?= go tool -modfile=go.tool.mod openapi-gen
# Go packages whose tests run in `make test`.
TEST_PACKAGES ?= ./...
GO_TEST_FLAGS ?= -count=1 -timeout=30m

.DEFAULT_GOAL := help
SHELL := /usr/bin/env bash -o pipefail

##@ Getting started

.PHONY: dev
dev: build envtest ## Run the operator on a local control plane with the samples applied (Ctrl-C stops it).
	go build -o bin/dev-env ./hack/dev
	./bin/dev-env --bin bin --kubeconfig bin/dev/kubeconfig

.PHONY: cluster
cluster: node-components tools test-deps ## Run the operator on a real single-node Kubernetes here (containerd, kubelet, kube-proxy, CoreDNS): its image loaded, the chart installed by Helm with its defaults, the samples applied.
	go run ./hack/image --tag $(CLUSTER_IMG) --out bin/image/cluster.tar
	go run ./hack/cluster up --image bin/image/cluster.tar

.PHONY: cluster-down
cluster-down: ## Remove the cluster of make cluster and everything it made on the host (processes, mounts, interfaces, routes, iptables chains).
	go run ./hack/cluster down

.PHONY: test
test: envtest node-components tools test-deps verify-generated vet lint ## Run the whole test suite: unit, envtest, end-to-end, and the chart on a real single-node cluster (test/cluster, as root).
	PATH="$$PATH:/usr/sbin" go test $(GO_TEST_FLAGS) $(TEST_PACKAGES)

.PHONY: console-screenshots
console-screenshots: envtest test-deps ## Take the web console's screenshots in docs/images/console again (the Chromium test of make test, with CONSOLE_SCREENSHOTS).
	PATH="$$PATH:/usr/sbin" CONSOLE_SCREENSHOTS=$(CURDIR)/docs/images/console go test ./test/e2e/ -count=1 -run 'TestWebConsole$$'

.PHONY: lint
lint: ## Lint: golangci-lint's standard linters and gosec, and kube-api-linter on api/ (.golangci*.yml say what is excepted and why).
	go tool -modfile=go.tool.mod golangci-lint run ./...
	go tool -modfile=go.tool.mod golangci-lint-kube-api-linter run --config .golangci-kal.yml ./api/...

.PHONY: test-chaos
test-chaos: envtest ## Kill the leading manager replica 200 times while apps are created and rotated (about 20 minutes; E2E_SEED replays a run).
	PRIVATEAPPS_CHAOS_KILLS=$${PRIVATEAPPS_CHAOS_KILLS:-200} go test -count=1 -timeout=60m -run 'TestLeaderFailover' -v ./test/e2e

.PHONY: test-deps
test-deps: ## Install the real servers the tests run that Go modules do not provide (nginx, Caddy, Redis).
	hack/test-deps.sh

##@ Development

.PHONY: generate
generate: ## Generate deepcopy code, OpenAPI models, CRDs and RBAC from the API types and markers.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...
	$(CONTROLLER_GEN) crd webhook paths=./... \
		output:crd:artifacts:config=config/crd/bases output:webhook:artifacts:config=config/webhook
	$(CONTROLLER_GEN) rbac:roleName=manager-role paths=./internal/controller/... paths=./internal/webhook/... output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) rbac:roleName=token-service-role,fileName=token_service_role.yaml paths=./internal/tokenservice/... \
		output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) rbac:roleName=insights-role,fileName=insights_role.yaml paths=./internal/insights/... \
		output:rbac:artifacts:config=config/rbac
	$(OPENAPI_GEN) --go-header-file hack/boilerplate.go.txt --report-filename /dev/null \
		--output-dir internal/insights/openapi --output-file zz_generated.openapi.go \
		--output-pkg github.com/privateapps-dev/privateapp-operator/internal/insights/openapi \
		./api/insights/v1alpha1 k8s.io/apimachinery/pkg/apis/meta/v1 k8s.io/apimachinery/pkg/runtime k8s.io/apimachinery/pkg/version
	go run ./hack/chartgen config charts/privateapp-operator

.PHONY: verify-generated
verify-generated: ## Fail when generated files are not what `make generate` writes.
	hack/verify-generated.sh

.PHONY: fmt
fmt: ## Run gofmt.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet, and check formatting and that go.mod is tidy.
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	@go mod tidy -diff || { echo "go.mod or go.sum is not tidy: run go mod tidy"; exit 1; }
	go vet ./...

.PHONY: fuzz
fuzz: ## Fuzz the token parser, the route matcher, the token service's answers and the access-log parser for a minute each.
	go test ./internal/token -run '^$$' -fuzz FuzzParse -fuzztime 60s
	go test ./internal/catalog -run '^$$' -fuzz FuzzDecide -fuzztime 60s
	go test ./internal/tokenservice -run '^$$' -fuzz FuzzRequests -fuzztime 60s
	go test ./internal/ingest -run '^$$' -fuzz FuzzAccessLine -fuzztime 60s

.PHONY: bench
bench: test-deps envtest build ## Benchmark the token service (throughput, latency, TokenReview, revocation) with wrk and write docs/benchmarks.md.
	go test ./internal/token ./internal/ratelimit ./internal/catalog ./internal/tokenservice -run '^$$' -bench . -benchmem | tee bin/bench-go.txt
	go run ./hack/bench-tokenservice --bin bin | tee bin/bench-tokenservice.md
	{ cat bin/bench-tokenservice.md; echo; echo '```'; grep -E '^(Benchmark|cpu:)' bin/bench-go.txt; echo '```'; } | \
		hack/update-bench-section.sh token-service "make bench"

.PHONY: bench-fullhouse
bench-fullhouse: envtest build ## Measure the token service's memory with its connection bound full (idle, silent, stalled connections) and write docs/benchmarks.md.
	go run ./hack/bench-fullhouse --token-service bin/token-service | tee bin/bench-fullhouse.md
	hack/update-bench-section.sh fullhouse "make bench-fullhouse" < bin/bench-fullhouse.md

.PHONY: bench-calllog
bench-calllog: test-deps ## Benchmark the call log's stores (ingest, disk, the filtered 30-day query over 10M entries) and write docs/benchmarks.md.
	go run ./hack/bench-calllog --entries 10000000 | tee bin/bench-calllog.md
	hack/update-bench-section.sh calllog "make bench-calllog" < bin/bench-calllog.md

.PHONY: bench-reconcile
bench-reconcile: envtest build ## Benchmark: 1,000 apps in 50 namespaces against envtest, next to a plain-client floor.
	go run ./hack/bench-reconcile --manager bin/manager --apps 1000 --namespaces 50

##@ Build

.PHONY: build
build: ## Build each component's command into bin/ (manager, token-service, insights) and the kubectl plugin into bin/kubectl-privateapp.
	go build -o bin/ ./cmd/manager ./cmd/token-service ./cmd/insights ./cmd/kubectl-privateapp

.PHONY: run
run: build ## Run the manager and the token service (http://127.0.0.1:18080) against the cluster of the current kubeconfig (Ctrl-C stops both).
	./bin/token-service --token-service-bind-address=127.0.0.1:18080 --token-service-insecure --health-probe-bind-address=0 & ts=$$!; \
		trap 'kill $$ts 2>/dev/null' EXIT; ./bin/manager

IMG ?= privateapp-operator:dev
# The image make cluster loads: the name the chart's default values pull.
CLUSTER_IMG ?= ghcr.io/privateapps-dev/privateapp-operator:$(shell sed -n 's/^appVersion: *"*\([^"]*\)"*/\1/p' charts/privateapp-operator/Chart.yaml)

.PHONY: image
image: ## Write the operator's image (its three commands) as an OCI archive (bin/image/privateapp-operator.tar) from the Dockerfile, without Docker; PUSH=<registry>/<repo>:<tag> also pushes it.
	go run ./hack/image --tag $(IMG) --out bin/image/privateapp-operator.tar $(if $(PUSH),--push $(PUSH))

.PHONY: docker-build
docker-build: ## Build the operator's image with a Docker engine (none runs on the build machines: `make image` makes the same image without one).
	docker build -t $(IMG) .

.PHONY: envtest
envtest: ## Build kube-apiserver and etcd for envtest into bin/k8s (once; about 10 minutes cold).
	hack/envtest.sh "$(KUBEBUILDER_ASSETS)"

.PHONY: node-components
node-components: envtest ## Build the node of make cluster into bin/k8s: kubelet, kube-controller-manager, kube-scheduler, kube-proxy v1.37.2, containerd v2.4.2 and CoreDNS v1.15.0 (about 10 minutes after envtest, cold).
	hack/node.sh "$(KUBEBUILDER_ASSETS)"

.PHONY: tools
tools: ## Build helm and kubeconform (pinned in go.tool.mod) into bin/tools (once; about 4 minutes cold).
	hack/tools.sh

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)
