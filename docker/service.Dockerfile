# The stream service and public gRPC API (padellm-ner serve | stream), and the worker beside a TGI server
# (padellm-ner worker --backend tgi). No torch: the model lives in the worker image or in TGI.
# Build from the repository root:  docker build -f docker/service.Dockerfile -t padellm-ner/service:0.1.0 .
#
# BASE: any Debian-based image with Python 3.11 and pip (default: the official one). Pin it by digest where your
# registry allows (python:3.11.7-slim-bookworm@sha256:...).
ARG BASE=python:3.11.7-slim-bookworm
FROM ${BASE} AS build
# Where package traffic goes through a TLS-intercepting proxy, pass its CA (mounted into the build) with
# --build-arg SSL_CERT_FILE=... --build-arg PIP_CERT=...; empty by default.
ARG SSL_CERT_FILE
ARG PIP_CERT
ENV UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_PROJECT_ENVIRONMENT=/opt/padellm/.venv UV_PYTHON_DOWNLOADS=never \
    PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
# exactly the locked versions, without the model extra (no torch) and without the dev tools: the dependencies first
# (a layer that changes only with uv.lock), then the Python gRPC code generated from proto/ (never committed)
# and the project itself
RUN python3 -m uv sync --frozen --no-dev --no-install-project
COPY padellm_ner padellm_ner
COPY service service
COPY workers workers
COPY entrypoints entrypoints
COPY proto proto
COPY scripts/gen_proto.sh scripts/gen_proto.sh
RUN PYTHON=/opt/padellm/.venv/bin/python bash scripts/gen_proto.sh \
 && python3 -m uv sync --frozen --no-dev --no-editable

FROM ${BASE}
RUN groupadd --gid 10001 padellm && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin padellm
COPY --from=build /opt/padellm/.venv /opt/padellm/.venv
ENV PATH=/opt/padellm/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PADELLM_LOG_FORMAT=json
USER 10001:10001
EXPOSE 50051 9400
ENTRYPOINT ["padellm-ner"]
CMD ["serve", "--help"]
