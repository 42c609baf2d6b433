"""The chart on a real Kubernetes API server (scripts/cluster.sh: kube-apiserver, controller manager, scheduler,
etcd, kwok's simulated nodes, KEDA's and the Prometheus Operator's CRDs): every values file applied with
server-side strict validation, the embedded profile installed with `helm install --wait` into a namespace that
enforces the restricted Pod Security Standard, and an upgrade that changes what an immutable field would hold.
Kwok plays the kubelet, so pods become ready without running: these tests prove what the API server accepts, not
what a container does (tests/test_images.py runs the images). Skipped, saying why, where the cluster is not up;
`.ci/run` starts it."""

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "padellm-ner"
VALUES_FILES = sorted((CHART / "ci").glob("*.yaml"))


def cluster_env() -> dict[str, str] | None:
    script = subprocess.run(["bash", str(REPO / "scripts" / "cluster.sh"), "env"], capture_output=True, text=True)
    if script.returncode != 0:
        return None
    env = dict(os.environ)
    for assignment in script.stdout.split()[1:]:  # "export KUBECONFIG=... PATH=..."
        key, value = assignment.split("=", 1)
        env[key] = value.replace("$PATH", os.environ.get("PATH", ""))
    if not Path(env.get("KUBECONFIG", "")).exists():
        return None
    ready = subprocess.run(["kubectl", "get", "--raw", "/readyz"], capture_output=True, env=env)
    return env if ready.returncode == 0 else None


ENV = cluster_env()
pytestmark = [
    pytest.mark.skipif(ENV is None, reason="no test cluster: run `bash scripts/cluster.sh start` (CI does)"),
    pytest.mark.timeout(600),
]


def run(*command: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, env=ENV, timeout=300)
    if check:
        assert result.returncode == 0, f"{' '.join(command)}: {result.stderr}"
    return result


@pytest.fixture
def namespace():
    """A namespace of its own, enforcing the restricted Pod Security Standard; deleted afterwards."""
    name = f"padellm-{uuid.uuid4().hex[:6]}"
    run("kubectl", "create", "namespace", name)
    run("kubectl", "label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted")  # fmt: skip
    yield name
    run("kubectl", "delete", "namespace", name, "--wait=false", check=False)


def template(namespace: str, values_file: Path | None, *extra: str) -> str:
    return run(
        "helm",
        "template",
        "ner",
        str(CHART),
        "-n",
        namespace,
        *(["-f", str(values_file)] if values_file else []),
        *extra,
    ).stdout


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES], ids=lambda p: p.name if p else "defaults")
def test_every_values_file_passes_strict_server_side_validation(namespace, values_file):
    """`helm template | kubectl apply --dry-run=server --validate=strict`: every object, CRDs included, as the
    API server would store it; an unknown or misplaced field fails."""
    result = run("kubectl", "apply", "-n", namespace, "--dry-run=server", "--validate=strict", "-f", "-",
                 stdin=template(namespace, values_file), check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    if values_file is None or "tgi" not in values_file.name:
        assert "would violate PodSecurity" not in result.stderr, result.stderr
    else:
        # TGI's container is the chart's one documented exception (its image runs only as root)
        warnings = [w for w in result.stderr.splitlines() if "would violate PodSecurity" in w]
        assert warnings and all('container "tgi"' in w and "worker" not in w.split("(", 1)[1] for w in warnings)


def test_strict_validation_catches_an_unknown_field(namespace):
    """The check above can fail: one misspelt field in a rendered Deployment is refused."""
    docs = [d for d in yaml.safe_load_all(template(namespace, None)) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    result = run("kubectl", "apply", "-n", namespace, "--dry-run=server", "--validate=strict", "-f", "-",
                 stdin=json.dumps(deployment), check=False)  # fmt: skip
    assert result.returncode != 0 and "imagePullPolicyy" in result.stderr


def test_the_embedded_profile_installs_and_becomes_ready_under_the_restricted_standard(namespace):
    install = run("helm", "install", "ner", str(CHART), "-n", namespace, "--wait", "--timeout", "180s", check=False)
    assert install.returncode == 0, install.stderr
    pods = json.loads(run("kubectl", "get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    ready = {p["metadata"]["name"]: all(c["ready"] for c in p["status"].get("containerStatuses", [])) for p in pods}
    assert any(n.startswith("ner-padellm-ner-worker-conll03-") for n in ready) and all(ready.values()), ready
    assert any(n.startswith("ner-padellm-ner-service-") for n in ready)
    # the workers' one DNS name resolves through a headless Service with the worker pods as endpoints
    endpoints = json.loads(
        run("kubectl", "get", "endpointslices", "-n", namespace, "-l",
            "kubernetes.io/service-name=ner-padellm-ner-worker-conll03-headless", "-o", "json").stdout
    )["items"]  # fmt: skip
    assert sum(len(s.get("endpoints") or []) for s in endpoints) == 1
    # scaling the workers is a change to the StatefulSet alone: the service's configuration stays as it was
    config_before = run("kubectl", "get", "configmap", "ner-padellm-ner", "-n", namespace, "-o", "json").stdout
    run("kubectl", "scale", "statefulset", "ner-padellm-ner-worker-conll03", "-n", namespace, "--replicas=3")
    run("kubectl", "rollout", "status", "statefulset/ner-padellm-ner-worker-conll03", "-n", namespace, "--timeout=120s")
    config_after = run("kubectl", "get", "configmap", "ner-padellm-ner", "-n", namespace, "-o", "json").stdout
    assert json.loads(config_before)["data"] == json.loads(config_after)["data"]


def test_a_tgi_release_upgrades_with_a_new_model_cache_size():
    """Nothing of the chart sits in an immutable field: the size of a per-pod model cache changes on `helm
    upgrade` (the shared claim, the default, grows where its storage class allows expansion)."""
    name = f"padellm-tgi-{uuid.uuid4().hex[:6]}"
    run("kubectl", "create", "namespace", name)
    run("kubectl", "label", "namespace", name, "pod-security.kubernetes.io/enforce=baseline")
    try:
        values = str(CHART / "ci" / "tgi-gpu-values.yaml")
        per_pod = ("--set", "tgi.modelCache.shared=false")
        run("helm", "install", "ner", str(CHART), "-n", name, "-f", values, *per_pod)
        upgrade = run("helm", "upgrade", "ner", str(CHART), "-n", name, "-f", values, *per_pod,
                      "--set", "tgi.modelCache.size=80Gi", "--set", "worker.replicaCount=2", check=False)  # fmt: skip
        assert upgrade.returncode == 0, upgrade.stderr
        sts = json.loads(
            run("kubectl", "get", "statefulset", "ner-padellm-ner-worker-conll03", "-n", name, "-o", "json").stdout
        )
        cache = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "model-cache")
        assert cache["ephemeral"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "80Gi"
    finally:
        run("kubectl", "delete", "namespace", name, "--wait=false", check=False)


def test_the_shared_model_cache_outlives_the_release():
    """TGI's shared model cache claim is made once and kept when the release is uninstalled (resource-policy
    keep), so a reinstall finds the model already downloaded."""
    name = f"padellm-cache-{uuid.uuid4().hex[:6]}"
    run("kubectl", "create", "namespace", name)
    run("kubectl", "label", "namespace", name, "pod-security.kubernetes.io/enforce=baseline")
    try:
        values = str(CHART / "ci" / "tgi-gpu-values.yaml")
        run("helm", "install", "ner", str(CHART), "-n", name, "-f", values)
        claim = json.loads(run("kubectl", "get", "pvc", "ner-padellm-ner-model-cache", "-n", name, "-o", "json").stdout)
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
        run("helm", "uninstall", "ner", "-n", name, "--wait")
        kept = run("kubectl", "get", "pvc", "ner-padellm-ner-model-cache", "-n", name, "-o", "json", check=False)
        assert kept.returncode == 0 and json.loads(kept.stdout)["metadata"]["uid"] == claim["metadata"]["uid"]
        reinstall = run("helm", "install", "ner", str(CHART), "-n", name, "-f", values, check=False)
        assert reinstall.returncode == 0, reinstall.stderr
    finally:
        run("kubectl", "delete", "namespace", name, "--wait=false", check=False)
