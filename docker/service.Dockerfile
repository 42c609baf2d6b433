# The stream service and public gRPC API (padellm-ner serve | stream). No torch: the model lives in the workers.
# Build from the repository root:  docker build -f docker/service.Dockerfile -t padellm-ner/service:0.1.0 .
FROM python:3.11.7-slim-bookworm AS build
ENV UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_PROJECT_ENVIRONMENT=/opt/padellm/.venv
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY padellm_ner padellm_ner
COPY service service
COPY workers workers
COPY proto proto
COPY scripts/gen_proto.sh scripts/gen_proto.sh
# exactly the locked versions, without the model extra and without the dev tools
RUN uv sync --frozen --no-dev --no-editable \
 && /opt/padellm/.venv/bin/python -m grpc_tools.protoc -I proto --python_out=/opt/padellm/.venv/lib/python3.11/site-packages \
      --grpc_python_out=/opt/padellm/.venv/lib/python3.11/site-packages proto/padellm/v1/worker.proto proto/padellm/v1/ner.proto \
 && touch /opt/padellm/.venv/lib/python3.11/site-packages/padellm/__init__.py \
          /opt/padellm/.venv/lib/python3.11/site-packages/padellm/v1/__init__.py

FROM python:3.11.7-slim-bookworm
RUN groupadd --gid 10001 padellm && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin padellm
COPY --from=build /opt/padellm/.venv /opt/padellm/.venv
ENV PATH=/opt/padellm/.venv/bin:$PATH PYTHONUNBUFFERED=1 PADELLM_LOG_FORMAT=json
USER 10001:10001
EXPOSE 50051 9400
ENTRYPOINT ["padellm-ner"]
CMD ["serve", "--help"]
