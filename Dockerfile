# The operator's image: one static binary per component (/manager,
# /token-service, /insights) on a distroless base, run as non-root. The
# entrypoint is the manager; the chart runs the others by their command.
# Build with `docker build -t privateapp-operator:dev .` where a Docker engine
# exists. Where none does, `make image` (hack/image) makes the same image from
# this file: it runs the build stage's `go build` lines as written and takes
# the final stage's COPY --from=build, USER, ENTRYPOINT and LABELs; keep them
# in these forms (TestImage checks both agree).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY internal/ internal/
ARG TARGETOS=linux TARGETARCH=amd64
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags="-s -w" -o /manager ./cmd/manager
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags="-s -w" -o /token-service ./cmd/token-service
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags="-s -w" -o /insights ./cmd/insights

FROM gcr.io/distroless/static:nonroot
LABEL org.opencontainers.image.title="privateapp-operator" \
      org.opencontainers.image.description="Scoped access tokens for private apps, declared as Kubernetes resources" \
      org.opencontainers.image.source="https://github.com/privateapps-dev/privateapp-operator"
COPY --from=build /manager /manager
COPY --from=build /token-service /token-service
COPY --from=build /insights /insights
USER 65532:65532
ENTRYPOINT ["/manager"]
