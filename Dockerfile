# One image for the controller and the agent: `docker run IMAGE controller`, `docker run IMAGE agent …`
# (the command is `buildit`'s verb). See README, "Docker hosts".
#
# Build it from a clone after `make install` (which fills web/static/vendor/ with the web UI's
# front-end files), or with `make image`, which does both:
#     docker build -t buildit:0.1.0 .
# The base is a build argument so a locally made Debian bookworm can stand in where no registry is
# reachable (the image test does that); any Debian bookworm-based image works.
ARG BASE=debian:bookworm-slim

# --- build: a virtualenv with BuildIt and its dependencies at the versions constraints.txt pins ---
FROM ${BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates >/dev/null \
    && rm -rf /var/lib/apt/lists/*
# The context is what .dockerignore lets through: sources, web/, and dist/wheels/ when `make image`
# made it.
COPY . /src/
RUN test -f /src/web/static/vendor/htmx.min.js && test -f /src/web/static/vendor/ansi_up.js \
    || { echo "web/static/vendor/ is empty: run 'make install' (or 'make image') before docker build" >&2; exit 1; }
# Not editable and without the dev extra: the runtime dependencies only, each at its pinned version.
# From dist/wheels/ alone when it holds wheels (`make image` builds them on the host with the same
# constraints: no package index needed in the build), else from the package index.
RUN python3 -m venv /opt/buildit \
    && if ls /src/dist/wheels/buildit-*.whl >/dev/null 2>&1; then \
         /opt/buildit/bin/pip install -q --no-index --find-links /src/dist/wheels -c /src/constraints.txt buildit; \
       else \
         /opt/buildit/bin/pip install -q -c /src/constraints.txt /src; \
       fi \
    && /opt/buildit/bin/python -m compileall -q /opt/buildit/lib >/dev/null

# --- runtime ---------------------------------------------------------------------------------------
FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive
# git: agents fetch stage workspaces with it. tini: PID 1 that forwards signals (SIGTERM drains an
# agent) and reaps the processes stages leave behind. No docker CLI: the agent talks to the engine
# through the Docker SDK over the socket.
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends python3 git ca-certificates tini >/dev/null \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 buildit \
    && useradd --system --uid 10001 --gid buildit --home-dir /var/lib/buildit --shell /usr/sbin/nologin buildit \
    && install -d -o buildit -g buildit -m 0700 /var/lib/buildit /var/lib/buildit-agent
COPY --from=build /opt/buildit /opt/buildit
COPY --from=build /src/web/templates /opt/buildit/web/templates
COPY --from=build /src/web/static /opt/buildit/web/static
COPY --from=build /src/scripts/image-healthcheck.py /usr/local/bin/buildit-healthcheck

# Listen on every interface of the container (publish the ports, or use --network host with
# --host 127.0.0.1). The agent's state and work dirs share one parent, so one volume mounted at
# the same path inside and outside holds both (see README: the work dir must be the same path on
# the host, because stage containers bind-mount their workspaces by host path).
ENV PATH=/opt/buildit/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BUILDIT_WEB_DIR=/opt/buildit/web \
    BUILDIT_DATA_DIR=/var/lib/buildit \
    BUILDIT_HTTP_HOST=0.0.0.0 \
    BUILDIT_GRPC_HOST=0.0.0.0 \
    BUILDIT_AGENT_STATE_DIR=/var/lib/buildit-agent/state \
    BUILDIT_AGENT_WORK_DIR=/var/lib/buildit-agent/work
USER buildit
WORKDIR /var/lib/buildit
EXPOSE 8080 9090
# The controller: GET /health on its HTTP port. An agent has no endpoint: it counts as healthy once
# it has registered (its token is in the state dir). See scripts/image-healthcheck.py.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["buildit-healthcheck"]
ENTRYPOINT ["tini", "--", "buildit"]
CMD ["controller"]
