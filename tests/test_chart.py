"""The Helm chart, offline: helm lint --strict (Helm 4 SDK), helm template for every values file, each manifest
validated against the Kubernetes JSON schemas in strict mode, and what matters asserted on the rendered objects."""

import re
from pathlib import Path

import pytest
import yaml

helm = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

CHART = Path(__file__).resolve().parents[1] / "charts" / "padellm-ner"
VALUES_FILES = sorted((CHART / "ci").glob("*.yaml"))
KUBERNETES_VERSION = "1.30.0"
CRDS = {"ScaledObject", "ServiceMonitor"}  # not in the Kubernetes schemas: checked field by field below


def render(values: dict | None = None, name: str = "ner", namespace: str = "nlp") -> list[dict]:
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values or {})
        files = chart.render(values or {}, name=name, namespace=namespace)
    return [
        doc
        for path, text in sorted(files.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def containers(docs: list[dict]) -> dict[str, dict]:
    out = {}
    for workload in by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet"):
        for c in workload["spec"]["template"]["spec"]["containers"]:
            out[f"{workload['metadata']['name']}/{c['name']}"] = c
    return out


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES], ids=lambda p: p.name if p else "defaults")
def test_lint_strict(values_file):
    result = helm.lint(str(CHART), load(values_file) if values_file else None, strict=True)
    assert result["errors"] == []
    assert [m for m in result["messages"] if m["severity"] > 1] == []  # nothing above INFO


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES], ids=lambda p: p.name if p else "defaults")
def test_every_manifest_validates_strictly(values_file):
    docs = render(load(values_file) if values_file else None)
    assert docs
    for doc in docs:
        if doc["kind"] in CRDS:
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_defaults_deploy_the_embedded_cpu_engine():
    docs = render()
    workers = by_kind(docs, "StatefulSet")
    assert len(workers) == 1
    pod = workers[0]["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["worker"]
    assert {"--backend=embedded", "--lookup-tokens=4"} <= set(pod["containers"][0]["args"])
    assert "nvidia.com/gpu" not in str(pod) and "volumeClaimTemplates" not in workers[0]["spec"]
    assert by_kind(docs, "HorizontalPodAutoscaler") and not by_kind(docs, "ScaledObject")


def test_tgi_on_gpu():
    docs = render(load(CHART / "ci" / "tgi-gpu-values.yaml"))
    worker = by_kind(docs, "StatefulSet")[0]
    pod = worker["spec"]["template"]["spec"]
    tgi, sidecar = pod["containers"]
    assert tgi["name"] == "tgi" and sidecar["name"] == "worker"
    assert tgi["resources"]["limits"]["nvidia.com/gpu"] == 1 and tgi["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert "--model-id=JinghuiLuAstronaut/PaDeLLM_llama2_7b_conll03" in tgi["args"]
    assert "--max-concurrent-requests=64" in tgi["args"]
    assert "--speculate=4" in tgi["args"]  # n-gram speculation: the mentions are copied from the prompt
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert tgi[probe]["httpGet"]["path"] == "/health"
    assert {"--backend=tgi", "--tgi-url=http://127.0.0.1:8080"} <= set(sidecar["args"])
    assert pod["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert worker["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "model-cache"
    token = next(e for e in tgi["env"] if e["name"] == "HF_TOKEN")
    assert token["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
    assert by_kind(docs, "ServiceMonitor")[0]["metadata"]["labels"]["release"] == "prometheus"


def test_service_is_wired_to_every_worker_and_the_topics():
    docs = render({"worker": {"replicaCount": 3}, "kafka": {"inputTopic": "docs-in", "outputTopic": "ents-out"}})
    config = by_kind(docs, "ConfigMap")[0]["data"]
    worker = by_kind(docs, "StatefulSet")[0]
    headless = next(s for s in by_kind(docs, "Service") if s["spec"].get("clusterIP") == "None")
    assert worker["spec"]["serviceName"] == headless["metadata"]["name"]
    expected = [
        f"{worker['metadata']['name']}-{i}.{headless['metadata']['name']}.nlp.svc.cluster.local:50061" for i in range(3)
    ]
    assert config["PADELLM_WORKERS"].split(",") == expected
    assert (config["PADELLM_INPUT_TOPIC"], config["PADELLM_OUTPUT_TOPIC"]) == ("docs-in", "ents-out")
    assert config["PADELLM_DEAD_LETTER_TOPIC"] == "docs-in.dead-letter"
    service = containers(docs)
    api, stream = service["ner-padellm-ner-service/api"], service["ner-padellm-ner-service/stream"]
    assert "--workers=$(PADELLM_WORKERS)" in api["args"] and "--workers=$(PADELLM_WORKERS)" in stream["args"]
    assert "--input-topic=$(PADELLM_INPUT_TOPIC)" in stream["args"]
    assert api["readinessProbe"]["grpc"]["port"] == 50051
    for name, c in service.items():
        if name.endswith("/worker"):
            assert c["readinessProbe"]["grpc"]["port"] == 50061
    # the worker NetworkPolicy admits the service's pods on the worker port
    policy = next(p for p in by_kind(docs, "NetworkPolicy") if p["metadata"]["name"].endswith("-worker"))
    rule = policy["spec"]["ingress"][0]
    assert rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "service"
    assert rule["ports"][0]["port"] == 50061


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES], ids=lambda p: p.name if p else "defaults")
def test_nothing_runs_as_root(values_file):
    docs = render(load(values_file) if values_file else None)
    for workload in by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet"):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, c["name"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], c["name"]


def test_keda_replaces_the_hpa():
    docs = render(load(CHART / "ci" / "keda-values.yaml"))
    assert not by_kind(docs, "HorizontalPodAutoscaler")
    scaled = by_kind(docs, "ScaledObject")[0]
    # exactly-once: the service is a StatefulSet, so each pod's transactional id ($(POD_NAME)) survives a
    # restart and fences the predecessor's open transaction
    assert not [
        d for d in by_kind(docs, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "service"
    ]
    deployment = next(
        d for d in by_kind(docs, "StatefulSet") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "service"
    )
    assert deployment["spec"]["serviceName"] == deployment["metadata"]["name"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": deployment["metadata"]["name"],
    }
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "kafka" and trigger["metadata"]["topic"] == "documents"
    assert trigger["metadata"]["consumerGroup"] == "padellm-ner" and trigger["metadata"]["lagThreshold"] == "20"
    assert "replicas" not in deployment["spec"]
    stream = containers(docs)["ner-padellm-ner-service/stream"]
    assert "--exactly-once" in stream["args"] and "--security-protocol=SASL_SSL" in stream["args"]
    password = next(e for e in stream["env"] if e["name"] == "PADELLM_KAFKA_SASL_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"]["name"] == "kafka-sasl"


def test_tls_everywhere():
    docs = render(load(CHART / "ci" / "tls-values.yaml"))
    c = containers(docs)
    api, worker = c["ner-padellm-ner-service/api"], c["ner-padellm-ner-worker/worker"]
    assert {
        "--tls-cert=/etc/padellm/grpc-tls/tls.crt",
        "--tls-client-ca=/etc/padellm/grpc-tls/ca.crt",
        "--worker-tls-ca=/etc/padellm/grpc-tls/ca.crt",
    } <= set(api["args"])
    assert "--tls-client-ca=/etc/padellm/grpc-tls/ca.crt" in worker["args"]
    for workload in by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet"):
        volume = next(v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == "grpc-tls")
        assert volume["secret"]["secretName"] == "padellm-grpc-tls"


def test_schema_rejects_bad_values():
    with helm.Chart.load(str(CHART)) as chart:
        for bad in (
            {"service": {"mode": "parallel"}},
            {"worker": {"replicaCount": 0}},
            {"unknownKey": 1},
            {"kafka": {"securityProtocol": "TLS"}},
        ):
            with pytest.raises(helm.errors.HelmValuesError):
                chart.validate_schema(bad)


def test_readme_documents_every_value():
    documented = set(re.findall(r"^\| `([^`]+)` \|", (CHART / "README.md").read_text(), re.M))

    def leaves(value, prefix=""):
        for key, item in value.items():
            path = f"{prefix}{key}"
            if (
                isinstance(item, dict)
                and item
                and path not in {"service.resources", "worker.resources", "tgi.resources", "tgi.nodeSelector"}
            ):
                yield from leaves(item, path + ".")
            else:
                yield path

    assert set(leaves(load(CHART / "values.yaml"))) <= documented


def args_of(docs: list[dict], container: str) -> dict[str, str]:
    (found,) = [c for name, c in containers(docs).items() if name.endswith("/" + container)]
    return dict(a.removeprefix("--").split("=", 1) for a in found["args"] if a.startswith("--") and "=" in a)


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES], ids=lambda p: p.name if p else "defaults")
def test_window_sizes_agree_between_service_workers_and_tgi(values_file):
    """The service's windows fit a worker call, and TGI's --max-input-tokens holds a window's prompt."""
    docs = render(load(values_file) if values_file else None)
    worker = args_of(docs, "worker")
    for name in ("api", "stream"):
        if any(n.endswith("/" + name) for n in containers(docs)):
            assert int(args_of(docs, name)["window-tokens"]) <= int(worker["max-window-tokens"])
    if any(n.endswith("/tgi") for n in containers(docs)):
        assert int(args_of(docs, "tgi")["max-input-tokens"]) >= 2 * int(worker["max-window-tokens"]) + 128
        assert worker["schemas"] == "conll03"


def test_window_sizes_that_disagree_do_not_render():
    with pytest.raises(Exception, match="maxWindowTokens"):
        render({"service": {"windowTokens": 600}})
    with pytest.raises(Exception, match="maxInputTokens"):
        render({"tgi": {"enabled": True, "maxInputTokens": 1000}})
