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
CRDS = {
    "ScaledObject",
    "TriggerAuthentication",
    "ServiceMonitor",
}  # not in the Kubernetes schemas: checked field by field below


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
    assert {"--backend=embedded", "--lookup-tokens=4", "--prefix-cache-tokens=32768"} <= set(
        pod["containers"][0]["args"]
    )
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
    # the GPU request places the pod on a GPU node; no label that only NVIDIA's GPU Feature Discovery sets
    assert "nodeSelector" not in pod
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory"
    # one model cache for every worker pod, kept across restarts and uninstalls: the model is downloaded once
    cache = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    (claim,) = by_kind(docs, "PersistentVolumeClaim")
    assert cache["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"] == "ner-padellm-ner-model-cache"
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    per_pod = render(
        {**load(CHART / "ci" / "tgi-gpu-values.yaml"), "tgi": {"enabled": True, "modelCache": {"shared": False}}}
    )
    pod = by_kind(per_pod, "StatefulSet")[0]["spec"]["template"]["spec"]
    cache = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    assert "ephemeral" in cache and not by_kind(per_pod, "PersistentVolumeClaim")
    token = next(e for e in tgi["env"] if e["name"] == "HF_TOKEN")
    assert token["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
    assert by_kind(docs, "ServiceMonitor")[0]["metadata"]["labels"]["release"] == "prometheus"


def test_vllm_on_gpu():
    """vLLM beside each worker: the model's serving folder from a claim (read-only, nothing downloaded), prefix
    caching on, /health probes, the worker on the vllm backend over localhost with the folder's padellm.json."""
    docs = render(load(CHART / "ci" / "vllm-gpu-values.yaml"))
    pod = by_kind(docs, "StatefulSet")[0]["spec"]["template"]["spec"]
    vllm, worker = pod["containers"]
    assert vllm["name"] == "vllm" and worker["name"] == "worker"
    assert vllm["image"] == "docker.io/vllm/vllm-openai:v0.32.0"
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 1
    args = vllm["args"]
    assert args[0] == "/models/padellm-conll03" and "--served-model-name=padellm-conll03" in args
    assert "--enable-prefix-caching" in args and "--host=0.0.0.0" in args
    assert int(args_of(docs, "vllm")["max-model-len"]) >= 2 * int(args_of(docs, "worker")["max-window-tokens"]) + 128
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert vllm[probe]["httpGet"]["path"] == "/health"
    assert {"HF_HUB_OFFLINE"} <= {e["name"] for e in vllm["env"]}
    assert {
        "--backend=vllm",
        "--vllm-url=http://127.0.0.1:8000",
        "--vllm-model=padellm-conll03",
        "--model=/models/padellm-conll03",
    } <= set(worker["args"])
    model = next(v for v in pod["volumes"] if v["name"] == "model")
    assert model["persistentVolumeClaim"] == {"claimName": "padellm-models", "readOnly": True}
    assert all(m["readOnly"] for c in (vllm, worker) for m in c["volumeMounts"] if m["name"] == "model")
    assert worker["image"] == containers(docs)["ner-padellm-ner-service/api"]["image"]  # no torch beside vLLM
    assert "nodeSelector" not in pod and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    with pytest.raises(Exception, match="existingClaim"):
        render({"vllm": {"enabled": True}})
    with pytest.raises(Exception, match="one model server"):
        render({"vllm": {"enabled": True, "model": {"existingClaim": "m"}}, "tgi": {"enabled": True}})
    with pytest.raises(Exception, match="maxModelLen"):
        render({"vllm": {"enabled": True, "model": {"existingClaim": "m"}, "maxModelLen": 512}})


def test_workers_scale_on_calls_in_flight_with_keda():
    docs = render(load(CHART / "ci" / "vllm-gpu-values.yaml"))
    worker_scalers = [s for s in by_kind(docs, "ScaledObject") if s["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"]
    (scaled,) = worker_scalers
    assert scaled["spec"]["scaleTargetRef"]["name"] == "ner-padellm-ner-worker-conll03"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["query"] == (
        'sum(padellm_worker_calls_in_flight{namespace="nlp",pod=~"ner-padellm-ner-worker-conll03-[0-9]+"})'
    )
    assert trigger["metadata"]["threshold"] == "64"
    assert not [
        h for h in by_kind(docs, "HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    ]


def policy(docs: list[dict], component: str) -> dict:
    return next(p for p in by_kind(docs, "NetworkPolicy") if p["metadata"]["name"].endswith(f"-{component}"))


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES], ids=lambda p: p.name if p else "defaults")
def test_network_policies_close_the_model_server_and_bound_egress(values_file):
    """A model server's port (it generates, not only reports metrics) is open to no other pod unless scrapers are
    named; every pod's egress is bounded: DNS, the workers' gRPC, Kafka's ports, HTTPS only for a downloading TGI."""
    values = load(values_file) if values_file else {}
    docs = render(values)
    workers, service = policy(docs, "worker"), policy(docs, "service")
    assert workers["spec"]["policyTypes"] == service["spec"]["policyTypes"] == ["Ingress", "Egress"]
    server_ports = {8000, 8080} & {p["port"] for rule in workers["spec"]["ingress"] for p in rule.get("ports", [])}
    scrapers = values.get("networkPolicy", {}).get("metricsIngressFrom")
    for rule in workers["spec"]["ingress"]:
        if {p["port"] for p in rule["ports"]} & server_ports:
            assert rule["from"] == scrapers  # never open to everyone
    if not scrapers:
        assert not server_ports
    egress_ports = {p["port"] for rule in service["spec"]["egress"] for p in rule["ports"]}
    bootstrap = values.get("kafka", {}).get("bootstrapServers", "kafka:9092")
    assert egress_ports == {53, 50061} | {int(server.rsplit(":", 1)[1]) for server in bootstrap.split(",")}
    worker_egress = {p["port"] for rule in workers["spec"]["egress"] for p in rule["ports"]}
    assert worker_egress == ({53, 443} if values.get("tgi", {}).get("enabled") else {53})
    kafka = render({"kafka": {"bootstrapServers": "k-0.kafka:9093,k-1.kafka:9093"}})
    assert {p["port"] for rule in policy(kafka, "service")["spec"]["egress"] for p in rule["ports"]} == {
        53,
        50061,
        9093,
    }


def test_the_helm_test_pod_is_deleted_passed_or_failed():
    (pod,) = by_kind(render(), "Pod")
    policies = pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(",")
    assert {"hook-succeeded", "hook-failed", "before-hook-creation"} == set(policies)


def test_service_is_wired_to_every_worker_and_the_topics():
    docs = render({"worker": {"replicaCount": 3}, "kafka": {"inputTopic": "docs-in", "outputTopic": "ents-out"}})
    config = by_kind(docs, "ConfigMap")[0]["data"]
    worker = by_kind(docs, "StatefulSet")[0]
    headless = next(s for s in by_kind(docs, "Service") if s["spec"].get("clusterIP") == "None")
    assert worker["spec"]["serviceName"] == headless["metadata"]["name"]
    # one DNS target for all workers: the headless Service resolves to every ready worker pod
    assert config["PADELLM_WORKERS"] == f"dns:///{headless['metadata']['name']}.nlp.svc.cluster.local:50061"
    assert headless["spec"]["publishNotReadyAddresses"] is False
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
def test_nothing_runs_as_root_but_tgi(values_file):
    """Every container runs as uid 10001, except TGI's: its image keeps its Python under /root (0700) and runs
    only as root (huggingface/text-generation-inference#3082). That one exception is narrow: uid 0 with every
    capability dropped, no privilege escalation, RuntimeDefault seccomp."""
    docs = render(load(values_file) if values_file else None)
    for workload in by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet") + by_kind(docs, "Pod"):
        pod = workload["spec"]["template"]["spec"] if "template" in workload["spec"] else workload["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"  # no re-chown of a big cache
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", c["name"]
            if c["name"] == "tgi":
                assert c["image"].startswith("ghcr.io/huggingface/text-generation-inference")
                assert (sc["runAsUser"], sc["runAsNonRoot"]) == (0, False)
            else:
                assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001, c["name"]
                assert sc["readOnlyRootFilesystem"] is True, c["name"]


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
    api, worker = c["ner-padellm-ner-service/api"], c["ner-padellm-ner-worker-conll03/worker"]
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
            {"models": []},
            {"models": [{"name": "Resume_Model", "schema": "resume"}]},
            {"models": [{"name": "resume"}]},
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
                and path
                not in {"service.resources", "worker.resources", "tgi.resources", "vllm.resources", "vllm.nodeSelector"}
            ):
                yield from leaves(item, path + ".")
            else:
                yield path

    assert set(leaves(load(CHART / "values.yaml"))) <= documented
    # and the table is the one values.yaml's comments give (scripts/chart/values_table.py writes it)
    import importlib.util

    spec = importlib.util.spec_from_file_location("values_table", CHART.parents[1] / "scripts/chart/values_table.py")
    values_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(values_table)
    readme = (CHART / "README.md").read_text()
    assert values_table.render(readme, (CHART / "values.yaml").read_text()) == readme, (
        "run .venv/bin/python scripts/chart/values_table.py"
    )


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


def test_tgi_listens_on_the_pod_address_with_probes_fit_for_a_7b_model():
    """Kubelet's httpGet probes and Prometheus connect to the pod IP: TGI must not listen on loopback only."""
    docs = render(load(CHART / "ci" / "tgi-gpu-values.yaml"))
    tgi = containers(docs)["ner-padellm-ner-worker-conll03/tgi"]
    hostname = args_of(docs, "tgi")["hostname"]
    assert hostname == "0.0.0.0"
    port = next(p for p in tgi["ports"] if p["name"] == "tgi-http")["containerPort"]
    assert args_of(docs, "tgi")["port"] == str(port)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert tgi[probe]["httpGet"]["port"] in ("tgi-http", port)
        assert tgi[probe]["timeoutSeconds"] >= 5  # /health generates a token behind the batch
    assert tgi["livenessProbe"]["periodSeconds"] * tgi["livenessProbe"]["failureThreshold"] >= 120


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES], ids=lambda p: p.name if p else "defaults")
def test_grpc_probes_never_meet_tls(values_file):
    """Kubelet's gRPC probes are plaintext: with TLS on, every gRPC probe targets a port the container serves
    health on in plaintext (--health-port), never its TLS port."""
    values = load(values_file) if values_file else {}
    docs = render(values)
    tls = values.get("grpcTls", {}).get("enabled", False)
    for name, c in containers(docs).items():
        args = dict(a.removeprefix("--").split("=", 1) for a in c.get("args", []) if "=" in a)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if "grpc" not in c.get(probe, {}):
                continue
            port = c[probe]["grpc"]["port"]
            if tls:
                assert "tls-cert" in args and args["health-port"] == str(port), name
                assert args["port"] != str(port), name
            else:
                assert args["port"] == str(port) and "tls-cert" not in args, name


def test_keda_reaches_a_secured_kafka_from_its_own_namespace():
    docs = render(load(CHART / "ci" / "keda-values.yaml"))
    trigger = by_kind(docs, "ScaledObject")[0]["spec"]["triggers"][0]
    (auth,) = by_kind(docs, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert {"sasl", "username", "password", "tls", "ca"} <= set(refs)
    assert (refs["password"]["name"], refs["password"]["key"]) == ("kafka-sasl", "password")
    assert (refs["ca"]["name"], refs["ca"]["key"]) == ("kafka-client-tls", "ca.crt")
    keda_secret = next(s for s in by_kind(docs, "Secret") if s["metadata"]["name"] == refs["sasl"]["name"])
    assert keda_secret["stringData"] == {"sasl": "scram_sha512", "username": "padellm", "tls": "enable"}
    # fully qualified names stay; a short Service name is the release's namespace's
    assert trigger["metadata"]["bootstrapServers"] == "kafka-0.kafka:9093,kafka-1.kafka:9093"
    short = render({"autoscaling": {"keda": {"enabled": True}}, "kafka": {"bootstrapServers": "kafka:9092"}})
    trigger = by_kind(short, "ScaledObject")[0]["spec"]["triggers"][0]
    assert trigger["metadata"]["bootstrapServers"] == "kafka.nlp.svc.cluster.local:9092"
    assert "authenticationRef" not in trigger and not by_kind(short, "TriggerAuthentication")


def test_kafka_tls_with_only_a_ca():
    only_ca = render({"kafka": {"securityProtocol": "SSL", "tls": {"existingSecret": "kafka-ca"}}})
    stream = args_of(only_ca, "stream")
    assert stream["ssl-cafile"] == "/etc/padellm/kafka-tls/ca.crt"
    assert "ssl-certfile" not in stream and "ssl-keyfile" not in stream
    mutual = render({"kafka": {"securityProtocol": "SSL", "tls": {"existingSecret": "kafka-ca", "clientAuth": True}}})
    assert {"ssl-certfile", "ssl-keyfile"} <= set(args_of(mutual, "stream"))


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES], ids=lambda p: p.name if p else "defaults")
def test_every_metrics_port_is_scraped_and_none_is_public(values_file):
    values = load(values_file) if values_file else {}
    docs = render({**values, "serviceMonitor": {**values.get("serviceMonitor", {}), "enabled": True}})
    public = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "ner-padellm-ner-service")
    assert [p["name"] for p in public["spec"]["ports"]] == ["grpc"]
    container_metrics = {
        p["name"] for c in containers(docs).values() for p in c.get("ports", []) if "metrics" in p["name"]
    }
    if any(n.endswith("/tgi") for n in containers(docs)):
        container_metrics.add("tgi-http")
    if any(n.endswith("/vllm") for n in containers(docs)):
        container_metrics.add("vllm-http")
    (monitor,) = by_kind(docs, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [s for s in by_kind(docs, "Service") if selector.items() <= s["metadata"]["labels"].items()]
    served = {p["name"] for s in selected for p in s["spec"]["ports"]}
    scraped = {e["port"] for e in monitor["spec"]["endpoints"]}
    assert container_metrics <= served and container_metrics <= scraped
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in selected)


def test_workers_scale_without_rerendering_the_service():
    """The service's configuration does not depend on the number of workers, and the workers can be scaled by
    an HPA on the StatefulSet."""
    one, five = render({"worker": {"replicaCount": 1}}), render({"worker": {"replicaCount": 5}})
    assert by_kind(one, "ConfigMap") == by_kind(five, "ConfigMap")
    scaled = render({"worker": {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6}}})
    worker = by_kind(scaled, "StatefulSet")[0]
    assert "replicas" not in worker["spec"]
    hpa = next(
        h for h in by_kind(scaled, "HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    )
    assert hpa["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert "--max-connection-age-s=300" in worker["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES], ids=lambda p: p.name if p else "defaults")
def test_no_disruption_budget_blocks_a_drain_and_no_upgrade_meets_an_immutable_field(values_file):
    docs = render(load(values_file) if values_file else None)
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        assert "minAvailable" not in pdb["spec"] and pdb["spec"]["maxUnavailable"] >= 1
    for workload in by_kind(docs, "StatefulSet"):
        assert "volumeClaimTemplates" not in workload["spec"]  # immutable: a changed size would fail upgrades
    for claim in by_kind(docs, "PersistentVolumeClaim"):  # the chart's own: kept when the release goes
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_embedded_worker_threads_follow_its_cpu_limit():
    worker = containers(render())["ner-padellm-ner-worker-conll03/worker"]
    threads = next(e for e in worker["env"] if e["name"] == "PADELLM_THREADS")
    assert threads["valueFrom"]["resourceFieldRef"] == {
        "containerName": "worker",
        "resource": "limits.cpu",
        "divisor": "1",
    }
    fixed = containers(render({"worker": {"threads": 3}}))["ner-padellm-ner-worker-conll03/worker"]
    assert next(e for e in fixed["env"] if e["name"] == "PADELLM_THREADS")["value"] == "3"


def test_the_tgi_sidecar_runs_from_the_service_image_and_images_pin_by_digest():
    docs = render(load(CHART / "ci" / "tgi-gpu-values.yaml"))
    c = containers(docs)
    assert c["ner-padellm-ner-worker-conll03/worker"]["image"] == c["ner-padellm-ner-service/api"]["image"]
    digest = "sha256:" + "a" * 64
    pinned = containers(render({"image": {"serviceDigest": digest, "workerDigest": digest}}))
    assert pinned["ner-padellm-ner-worker-conll03/worker"]["image"] == f"ghcr.io/padellm-ner/worker@{digest}"
    assert pinned["ner-padellm-ner-service/api"]["image"] == f"ghcr.io/padellm-ner/service@{digest}"


def test_one_worker_group_per_model():
    """Each entry of `models` is a worker StatefulSet of its own (selector, headless Service, PDB, autoscaler), the
    service reaches every group, and each group's worker serves its model."""
    models = [
        {"name": "conll03", "schema": "conll03"},
        {"name": "resume", "schema": "resume", "replicaCount": 2, "path": "/opt/padellm/models/padellm-resume"},
    ]
    docs = render({"models": models, "worker": {"autoscaling": {"enabled": True}}})
    sets = {s["metadata"]["name"]: s for s in by_kind(docs, "StatefulSet")}
    assert set(sets) == {"ner-padellm-ner-worker-conll03", "ner-padellm-ner-worker-resume"}
    selectors = [s["spec"]["selector"]["matchLabels"] for s in sets.values()]
    assert selectors[0] != selectors[1] and all(s["padellm-ner.dev/model"] for s in selectors)
    for workload in sets.values():  # each selects its own pods only
        assert (
            workload["spec"]["selector"]["matchLabels"].items()
            <= workload["spec"]["template"]["metadata"]["labels"].items()
        )
    headless = {s["metadata"]["name"]: s for s in by_kind(docs, "Service") if s["spec"].get("clusterIP") == "None"}
    assert set(headless) == {"ner-padellm-ner-worker-conll03-headless", "ner-padellm-ner-worker-resume-headless"}
    assert headless["ner-padellm-ner-worker-resume-headless"]["spec"]["selector"]["padellm-ner.dev/model"] == "resume"
    for kind in ("PodDisruptionBudget", "HorizontalPodAutoscaler"):
        names = {d["metadata"]["name"] for d in by_kind(docs, kind)}
        assert {"ner-padellm-ner-worker-conll03", "ner-padellm-ner-worker-resume"} <= names, kind
    config = next(c for c in by_kind(docs, "ConfigMap") if "PADELLM_WORKERS" in c["data"])
    assert config["data"]["PADELLM_WORKERS"].split(",") == [
        "dns:///ner-padellm-ner-worker-conll03-headless.nlp.svc.cluster.local:50061",
        "dns:///ner-padellm-ner-worker-resume-headless.nlp.svc.cluster.local:50061",
    ]
    workers = containers(docs)
    assert "--model=/opt/padellm/models/padellm-resume" in workers["ner-padellm-ner-worker-resume/worker"]["args"]
    assert not any(a.startswith("--model=") for a in workers["ner-padellm-ner-worker-conll03/worker"]["args"])
    # without autoscaling a group's own replica count wins over worker.replicaCount
    fixed = {s["metadata"]["name"]: s for s in by_kind(render({"models": models}), "StatefulSet")}
    assert fixed["ner-padellm-ner-worker-resume"]["spec"]["replicas"] == 2
    assert fixed["ner-padellm-ner-worker-conll03"]["spec"]["replicas"] == 1
    # beside TGI each worker names its model's schema; beside vLLM each serves its own folder
    tgi = containers(
        render(
            {
                **load(CHART / "ci" / "tgi-gpu-values.yaml"),
                "models": [
                    {"name": "conll03", "schema": "conll03"},
                    {"name": "resume", "schema": "resume", "tgiModelId": "org/padellm-resume"},
                ],
            }
        )
    )
    assert "--schemas=resume" in tgi["ner-padellm-ner-worker-resume/worker"]["args"]
    assert "--model-id=org/padellm-resume" in tgi["ner-padellm-ner-worker-resume/tgi"]["args"]
    vllm_values = load(CHART / "ci" / "vllm-gpu-values.yaml")
    vllm = containers(
        render(
            {
                **vllm_values,
                "models": [
                    {"name": "conll03", "schema": "conll03"},
                    {"name": "resume", "schema": "resume", "path": "resume", "servedName": "padellm-resume"},
                ],
            }
        )
    )
    assert vllm["ner-padellm-ner-worker-resume/vllm"]["args"][0] == "/models/resume"
    assert "--vllm-model=padellm-resume" in vllm["ner-padellm-ner-worker-resume/worker"]["args"]
