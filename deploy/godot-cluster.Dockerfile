# The demo's cluster (demo_project, preset "Linux Cluster (headless)") exported headless from
# Godot, in a small runtime image: how a Godot game server runs as a container.
#
#   docker build -f deploy/godot-cluster.Dockerfile -t sustenet-godot-cluster .
#   docker build -f deploy/godot-cluster.Dockerfile --build-arg SUSTENET_GODOT_FEATURES=agones \
#       -t sustenet-godot-cluster:agones .          # for deploy/k8s/godot-fleet.yaml
#   docker run --rm sustenet-godot-cluster --master-address=master --key-path=/keys/cluster-1
#
# Arguments after the image name are the demo cluster's user arguments (cluster.gd). Runs as an
# unprivileged user.

ARG GODOT_VERSION=4.6.3
# Cargo features of the GDExtension: "agones" for an Agones GameServer image
# (deploy/k8s/godot-fleet.yaml; the cluster then runs with --agones).
ARG SUSTENET_GODOT_FEATURES=""

# --- the GDExtension ---
FROM rust:1-bookworm AS extension
ARG SUSTENET_GODOT_FEATURES
WORKDIR /src
# protoc and the well-known types: the Agones SDK's gRPC code is generated at build time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked -p sustenet-godot --features "${SUSTENET_GODOT_FEATURES}" \
    && install -D -m 0644 target/release/libsustenet.so /out/libsustenet.so

# --- the export ---
FROM debian:bookworm-slim AS export
ARG GODOT_VERSION
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl unzip libfontconfig1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /godot
RUN curl -fsSLo godot.zip "https://github.com/godotengine/godot/releases/download/${GODOT_VERSION}-stable/Godot_v${GODOT_VERSION}-stable_linux.x86_64.zip" \
    && curl -fsSLo templates.tpz "https://github.com/godotengine/godot/releases/download/${GODOT_VERSION}-stable/Godot_v${GODOT_VERSION}-stable_export_templates.tpz" \
    && unzip -q godot.zip && mv "Godot_v${GODOT_VERSION}-stable_linux.x86_64" /usr/local/bin/godot \
    && mkdir -p "/root/.local/share/godot/export_templates/${GODOT_VERSION}.stable" \
    && unzip -q templates.tpz && mv templates/* "/root/.local/share/godot/export_templates/${GODOT_VERSION}.stable/" \
    && rm -rf godot.zip templates.tpz templates
WORKDIR /src
COPY demo_project/ demo_project/
COPY addons/sustenet/ demo_project/addons/sustenet/
COPY --from=extension /out/libsustenet.so demo_project/addons/sustenet/bin/libsustenet.so
RUN mkdir -p /out \
    && godot --headless --path demo_project --import \
    && godot --headless --path demo_project --export-release "Linux Cluster (headless)" /out/cluster.x86_64

# --- run ---
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /srv/cluster --create-home cluster
COPY --from=export /out/ /srv/cluster/
USER 10001
WORKDIR /srv/cluster
EXPOSE 6257/tcp 6257/udp 9100/tcp
# The cluster serves /metrics and /health on --metrics-bind (SustenetCluster.metrics_bind); the
# check asks /health (503 when the core is stuck) over plain bash.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9100 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/srv/cluster/cluster.x86_64", "--headless", "--", "--bind=0.0.0.0", "--metrics-bind=0.0.0.0:9100"]
