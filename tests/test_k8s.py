"""k8s/: every kustomization renders offline (`kubectl kustomize`, or `kustomize build`),
every rendered object validates against the Kubernetes schema (kubernetes-validate,
strict, offline), and what runs has limits and a non-root security context."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import kfp
import kubernetes_validate
import pytest
import yaml
from kfp import kubernetes as kfp_kubernetes

from postergenre.pipelines.compat import BACKEND_RELEASES, LATEST_BACKEND, version_key

K8S = Path(__file__).resolve().parents[1] / "k8s"
KUBERNETES_VERSION = "1.32.0"
LOCAL = ["base", "overlays/standalone", "overlays/multi-user"]
SENTINEL = "sentinel-value-never-committed"


def _kustomize_command() -> list[str] | None:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


def render(path: Path) -> list[dict]:
    command = _kustomize_command()
    if command is None:
        pytest.skip("needs kubectl (kubectl kustomize) or kustomize to render k8s/")
    done = subprocess.run([*command, str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory) -> Path:
    """k8s/secrets with each *.env.example filled in as an operator would."""
    work = tmp_path_factory.mktemp("k8s") / "secrets"
    shutil.copytree(K8S / "secrets", work)
    for example in work.glob("*.env.example"):
        lines = [line if line.startswith("#") or not line.strip() else f"{line}{SENTINEL}"
                 for line in example.read_text().splitlines()]
        example.with_suffix("").write_text("\n".join(lines) + "\n")
    return work


def _relative(path: Path, start: Path) -> str:
    """kustomize takes only relative paths to other kustomizations."""
    return os.path.relpath(path, start)


def _pod_specs(obj: dict) -> list[dict]:
    spec = obj.get("spec", {})
    if obj["kind"] == "Pod":
        return [spec]
    if obj["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    return [spec["template"]["spec"]] if "template" in spec else []


@pytest.mark.parametrize("name", LOCAL)
def test_renders_and_validates(name):
    objects = render(K8S / name)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "postergenre", obj
        assert obj["kind"] != "Secret", "secrets come only from k8s/secrets"


def test_namespaces_and_runner_identity():
    standalone = render(K8S / "overlays/standalone")
    assert {o["metadata"].get("namespace") for o in standalone} == {"kubeflow"}
    kinds = {(o["kind"], o["metadata"]["name"]) for o in standalone}
    assert {("ServiceAccount", "postergenre-runner"), ("Role", "postergenre-runner"),
            ("RoleBinding", "postergenre-runner")} <= kinds
    role = next(o for o in standalone if o["kind"] == "Role")
    # Exactly what KFP's driver and launcher (2.14.0-2.17.0) and Argo's executor call with
    # the run's identity: a pod read, one ConfigMap, one Secret, the task results. No
    # verb that changes a pod: in `kubeflow` that would reach KFP's own pods.
    assert _rules(role) == {
        ("", "pods", "get", None), ("", "configmaps", "get", "kfp-launcher"),
        ("", "secrets", "get", "mlpipeline-minio-artifact"),
        ("argoproj.io", "workflowtaskresults", "create", None),
        ("argoproj.io", "workflowtaskresults", "patch", None)}
    overlay = yaml.safe_load((K8S / "overlays/multi-user/kustomization.yaml").read_text())
    multi = render(K8S / "overlays/multi-user")
    assert {o["metadata"].get("namespace") for o in multi} == {overlay["namespace"]}


def _rules(role: dict) -> set[tuple]:
    """A Role's rules as (apiGroup, resource, verb, resourceName or None) rows."""
    return {(group, resource, verb, name) for rule in role["rules"]
            for group in rule["apiGroups"] for resource in rule["resources"]
            for verb in rule["verbs"] for name in rule.get("resourceNames", [None])}


def test_no_volume_that_no_task_mounts(tmp_path):
    """Posters reach the cluster one way, a DVC data version that ingest pulls from S3:
    no manifest creates a PersistentVolumeClaim, and the compiled pipeline mounts none
    (a volume's content has no version for the cache key to follow)."""
    from postergenre.pipelines.platform import ClusterSettings
    from postergenre.pipelines.runner import compile_pipeline

    for name in LOCAL:
        assert not [o for o in render(K8S / name) if o["kind"] == "PersistentVolumeClaim"]
    package = compile_pipeline(tmp_path / "p.yaml", ClusterSettings(
        image="r.example/p:1", gpu_image="r.example/g:1"))
    platform = list(yaml.safe_load_all(package.read_text()))[1]
    for label, executor in platform["platforms"]["kubernetes"]["deploymentSpec"][
            "executors"].items():
        assert not {"pvcMount", "genericEphemeralVolume"} & set(executor), label


def test_the_runner_account_mounts_its_token():
    """KFP's driver and launcher build a Kubernetes client from the pod's service-account
    token in every task: the runner account must not switch the mount off (pods that use
    it without KFP, such as the GPU check, opt out on their own)."""
    for name in ("base", "overlays/standalone", "overlays/multi-user"):
        (account,) = [o for o in render(K8S / name) if o["kind"] == "ServiceAccount"]
        assert account["metadata"]["name"] == "postergenre-runner"
        assert account.get("automountServiceAccountToken", True) is True, name


def test_multi_user_overlay_leaves_the_profile_namespace_alone(tmp_path):
    """The Profile's namespace keeps its name, its kubeflow-profile label (Kubeflow's
    NetworkPolicies and PodDefaults select on it) and its Pod Security level (the Istio
    sidecar needs more than `baseline`): the overlay holds no Namespace at all. Rendered
    beside a Namespace as Kubeflow's profile controller makes it, that one is untouched."""
    multi = render(K8S / "overlays/multi-user")
    assert not [o for o in multi if o["kind"] == "Namespace"]
    for obj in multi:
        labels = obj["metadata"].get("labels", {})
        assert not any(k.startswith("pod-security.kubernetes.io/") for k in labels), obj
    overlay = yaml.safe_load((K8S / "overlays/multi-user/kustomization.yaml").read_text())
    profile_ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": overlay["namespace"],
        "labels": {"app.kubernetes.io/part-of": "kubeflow-profile",
                   "istio-injection": "enabled"}}}
    (tmp_path / "profile-namespace.yaml").write_text(yaml.safe_dump(profile_ns))
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": ["profile-namespace.yaml", _relative(K8S / "overlays/multi-user",
                                                          tmp_path)]}))
    together = render(tmp_path)
    (namespace,) = [o for o in together if o["kind"] == "Namespace"]
    assert namespace == profile_ns
    assert len(together) == len(multi) + 1


def test_no_limitrange_where_kfp_itself_runs(tmp_path):
    """A LimitRange caps every container of its namespace that sets no limits: in
    `kubeflow` that is KFP's own API server, MySQL and object store. The defaults are an
    opt-in component for a namespace only postergenre's runs use."""
    for name in LOCAL:
        limit_ranges = [o for o in render(K8S / name) if o["kind"] == "LimitRange"]
        assert not limit_ranges, name
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "namespace": "postergenre-runs", "resources": [_relative(K8S / "base", tmp_path)],
        "components": [_relative(K8S / "components/run-defaults", tmp_path)]}))
    objects = render(tmp_path)
    (limit_range,) = [o for o in objects if o["kind"] == "LimitRange"]
    kubernetes_validate.validate(limit_range, KUBERNETES_VERSION, strict=True)
    assert limit_range["metadata"]["namespace"] == "postergenre-runs"
    assert limit_range["metadata"]["labels"]["app.kubernetes.io/part-of"] == "postergenre"
    for path in K8S.rglob("kustomization.yaml"):
        kustomization = yaml.safe_load(path.read_text())
        if any("run-defaults" in c for c in kustomization.get("components", [])):
            assert kustomization.get("namespace") != "kubeflow", path


def _gpu_check(tmp_path: Path, *flags: str) -> list[dict]:
    """`postergenre pipeline gpu-check` with `flags`, as the objects it writes."""
    from postergenre.cli import main

    out = tmp_path / "gpu-check.yaml"
    assert main(["pipeline", "gpu-check", "--output", str(out), *flags]) == 0
    return [doc for doc in yaml.safe_load_all(out.read_text()) if doc]


def test_everything_that_runs_is_limited_and_non_root(tmp_path):
    generated = _gpu_check(tmp_path, "--gpu-image", "r.example/gpu@sha256:" + "e" * 64)
    pods = [(o, spec) for o in [*(o for name in LOCAL for o in render(K8S / name)),
                                *generated] for spec in _pod_specs(o)]
    assert pods, "the GPU node-pool check runs a Job"
    for obj, spec in pods:
        assert spec["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
        assert spec.get("automountServiceAccountToken") is False
        for container in spec["containers"] + spec.get("initContainers", []):
            limits = container["resources"]["limits"]
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(limits) and {"cpu", "memory"} <= set(requests)
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("flags", [
    [], ["--node-selector", "gke:nvidia-tesla-t4"], ["--node-selector", "eks:gpu-a10"],
    ["--node-selector", "nvidia", "--gpu-count", "2", "--gpu-task-memory", "48Gi",
     "--shm-size", "2Gi", "--image-pull-secret", "regcred"],
    ["--node-selector", "none", "--no-gpu-toleration", "--gpu-type", "amd.com/gpu"]])
def test_gpu_check_lands_where_the_training_tasks_land(tmp_path, flags):
    """The GPU check Job is made from the same settings as the compiled pipeline: with the
    same flags it has the training task's node selector (the GPU operator's label, GKE's
    or EKS's), toleration, accelerator, /dev/shm, resources, image and pull secrets, and
    it runs the GPU image's check with --gpu (docker/check_cuda.py, copied to
    GPU_CHECK_SCRIPT)."""
    from postergenre.cli import main
    from postergenre.pipelines.platform import GPU_CHECK_SCRIPT, RUN_AS_USER

    images = ["--image", "r.example/cpu@sha256:" + "c" * 64,
              "--registry", "ghcr.io/acme", "--tag", "sha256:" + "d" * 64]
    package = tmp_path / "p.yaml"
    assert main(["pipeline", "compile", "--output", str(package), *images, *flags]) == 0
    spec, platform = yaml.safe_load_all(package.read_text())
    train = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    container = spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    job, network = _gpu_check(tmp_path, *images, *flags, "--namespace", "team-a")
    for obj in (job, network):
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        assert obj["metadata"]["namespace"] == "team-a"
    pod = job["spec"]["template"]["spec"]
    (check,) = pod["containers"]
    assert check["image"] == container["image"] == "ghcr.io/acme/postergenre-gpu@sha256:" + \
        "d" * 64
    assert check["command"] == ["python3", GPU_CHECK_SCRIPT, "--gpu"]
    assert pod.get("nodeSelector") == train.get("nodeSelector", {}).get("labels")
    assert pod.get("tolerations") == train.get("tolerations")
    gpu = container["resources"]["accelerator"]
    for side in ("requests", "limits"):
        assert check["resources"][side][gpu["resourceType"]] == gpu["resourceCount"]
    assert (check["resources"]["requests"]["cpu"], check["resources"]["limits"]["cpu"],
            check["resources"]["requests"]["memory"], check["resources"]["limits"]["memory"]) \
        == tuple(container["resources"][k] for k in (
            "resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest",
            "resourceMemoryLimit"))
    (shm,) = [v for v in pod["volumes"] if v["name"] == "dshm"]
    assert shm["emptyDir"] == {"medium": "Memory",
                               "sizeLimit": train["emptyDirMounts"][0]["sizeLimit"]}
    assert [s["name"] for s in pod.get("imagePullSecrets", [])] == \
        [s["secretName"] for s in train.get("imagePullSecret", [])]
    # Any namespace: no ServiceAccount named (multi-user profiles have no runner account
    # in `kubeflow`), no token, no Istio sidecar (a Job with one never completes).
    assert "serviceAccountName" not in pod and pod["automountServiceAccountToken"] is False
    assert job["spec"]["template"]["metadata"]["annotations"] == {
        "sidecar.istio.io/inject": "false"}
    assert pod["securityContext"]["runAsUser"] == RUN_AS_USER
    selected = network["spec"]["podSelector"]["matchLabels"].items()
    assert selected <= job["spec"]["template"]["metadata"]["labels"].items()
    assert network["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in network["spec"] and "egress" not in network["spec"]


# The fields of kfp-launcher's `providers` that the backend reads, by JSON name, for an
# s3:// root (kubeflow/pipelines 2.17.0, backend/src/v2/config/s3.go: S3ProviderConfig,
# S3ProviderDefault, S3Credentials, S3SecretRef; env.go: BucketProviders). Its YAML
# decoder ignores a field it does not know, so a misspelt one would fail only on a run.
S3_PROVIDER_FIELDS = {
    "providers": {"minio", "s3", "gs"}, "s3": {"default", "Overrides"},
    "default": {"endpoint", "credentials", "region", "disableSSL", "forcePathStyle",
                "maxRetries"},
    "credentials": {"fromEnv", "secretRef"},
    "secretRef": {"secretName", "accessKeyKey", "secretKeyKey"},
}
# What KFP 2.17.0 installs and these components patch (manifests/kustomize/base/pipeline:
# kfp-launcher-configmap.yaml with the install's empty default root, ml-pipeline-ui-sa.yaml,
# ml-pipeline-ui-deployment.yaml cut to its container), as stand-ins for the network.
KFP_OBJECTS = [
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kfp-launcher"},
     "data": {"defaultPipelineRoot": ""}},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ml-pipeline-ui"}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ml-pipeline-ui"},
     "spec": {"selector": {"matchLabels": {"app": "ml-pipeline-ui"}},
              "template": {"metadata": {"labels": {"app": "ml-pipeline-ui"}},
                           "spec": {"containers": [{
                               "name": "ml-pipeline-ui",
                               "image": "ghcr.io/kubeflow/kfp-frontend:2.17.0"}]}}}},
]


def _with_kfp(tmp_path: Path, component: str) -> dict[tuple[str, str], dict]:
    """k8s/overlays/standalone beside KFP's own objects, with `component`: the objects by
    (kind, name)."""
    (tmp_path / "kfp.yaml").write_text(yaml.safe_dump_all(KFP_OBJECTS))
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "namespace": "kubeflow",
        "resources": ["kfp.yaml", _relative(K8S / "overlays/standalone", tmp_path)],
        "components": [_relative(K8S / "components" / component, tmp_path)]}))
    objects = render(tmp_path)
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def _providers(objects: dict) -> dict:
    launcher = objects[("ConfigMap", "kfp-launcher")]
    assert launcher["data"]["defaultPipelineRoot"] == ""  # KFP's own key, kept
    providers = yaml.safe_load(launcher["data"]["providers"])

    def check(name: str, value: dict) -> None:
        assert set(value) <= S3_PROVIDER_FIELDS[name], (name, set(value))
        for key, inner in value.items():
            if isinstance(inner, dict) and key in S3_PROVIDER_FIELDS:
                check(key, inner)

    check("providers", providers)
    return providers["s3"]["default"]


def test_s3_pipeline_root_gives_the_launcher_the_projects_keys(tmp_path):
    """An s3:// pipeline root: kfp-launcher's providers.s3 names the bucket's region and
    endpoint and the same Secret and keys the tasks get (one key pair for the bucket),
    the runner account may read that Secret and no other new one, and KFP's own key of
    the ConfigMap stays."""
    from postergenre.pipelines.platform import S3_SECRET_KEYS, ClusterSettings

    objects = _with_kfp(tmp_path, "s3-pipeline-root")
    default = _providers(objects)
    assert default["region"] and default["endpoint"]
    ref = default["credentials"]["secretRef"]
    assert default["credentials"]["fromEnv"] is False
    assert ref["secretName"] == ClusterSettings().s3_secret
    assert {ref["accessKeyKey"], ref["secretKeyKey"]} == set(S3_SECRET_KEYS)
    role = objects[("Role", "postergenre-runner")]
    before = _rules(next(o for o in render(K8S / "overlays/standalone") if o["kind"] == "Role"))
    assert _rules(role) - before == {("", "secrets", "get", ref["secretName"])}
    # KFP 2.17's UI on multi-user Kubeflow: its own environment, from the same Secret.
    # (kubectl patch --patch-file reads it as kustomize does; kustomize wants it in its root)
    (tmp_path / "ui").mkdir()
    shutil.copy(K8S / "components/s3-pipeline-root/ml-pipeline-ui-env.yaml", tmp_path / "ui")
    (tmp_path / "ui" / "kfp.yaml").write_text(yaml.safe_dump(KFP_OBJECTS[2]))
    (tmp_path / "ui" / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": ["kfp.yaml"], "patches": [{"path": "ml-pipeline-ui-env.yaml"}]}))
    (ui,) = render(tmp_path / "ui")
    kubernetes_validate.validate(ui, KUBERNETES_VERSION, strict=True)
    env = {e["name"]: e.get("value", e.get("valueFrom"))
           for e in ui["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AWS_REGION"] == default["region"]
    for key in S3_SECRET_KEYS:
        assert env[key] == {"secretKeyRef": {"name": ref["secretName"], "key": key}}


def test_eks_irsa_gives_the_runner_and_the_ui_a_role_and_no_keys(tmp_path):
    """EKS with IRSA: the runner's and the UI's ServiceAccounts carry the role, the
    launcher takes the pod's web identity (fromEnv) in the bucket's region, and no
    Secret is named or readable."""
    objects = _with_kfp(tmp_path, "eks-irsa")
    default = _providers(objects)
    assert default["credentials"] == {"fromEnv": True} and default["region"]
    roles = {objects[("ServiceAccount", name)]["metadata"]["annotations"][
        "eks.amazonaws.com/role-arn"] for name in ("postergenre-runner", "ml-pipeline-ui")}
    assert len(roles) == 1 and re.fullmatch(r"arn:aws:iam::\d{12}:role/.+", roles.pop())
    (container,) = objects[("Deployment", "ml-pipeline-ui")]["spec"]["template"]["spec"][
        "containers"]
    assert container["env"] == [{"name": "AWS_REGION", "value": default["region"]}]
    role = objects[("Role", "postergenre-runner")]
    assert _rules(role) == _rules(next(o for o in render(K8S / "overlays/standalone")
                                       if o["kind"] == "Role"))


def test_eks_gpu_group_can_scale_up_from_zero():
    """An EKS group that starts at zero nodes grows only through Cluster Autoscaler, which
    needs the group's IAM policy and, with no node to look at, node-template tags for
    the label the compile selects (--node-selector eks), the GPU taint the tasks
    tolerate and the GPU they ask for."""
    from postergenre.pipelines.platform import GPU_RESOURCE, NODE_SELECTOR_SHORTCUTS

    config = yaml.safe_load((K8S / "gpu-node-pool/eksctl-gpu-nodegroup.yaml").read_text())
    (group,) = config["managedNodeGroups"]
    label, value = NODE_SELECTOR_SHORTCUTS["eks"]
    assert group["name"] == value
    assert group["minSize"] == 0
    assert group["iam"]["withAddonPolicies"]["autoScaler"] is True
    assert group["propagateASGTags"] is True
    template = "k8s.io/cluster-autoscaler/node-template"
    (taint,) = group["taints"]
    assert taint["key"] == GPU_RESOURCE and taint["effect"] == "NoSchedule"
    assert group["tags"] == {
        f"{template}/label/{label}": value,
        f"{template}/taint/{taint['key']}": f"{taint['value']}:{taint['effect']}",
        f"{template}/resources/{GPU_RESOURCE}": "1"}


def test_secret_templates_hold_names_and_keys_only(secrets_dir):
    from postergenre.pipelines.platform import S3_CONFIG_KEYS, S3_SECRET_KEYS, TMDB_SECRET_KEYS

    for example in (K8S / "secrets").glob("*.env.example"):
        for line in example.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                assert re.fullmatch(r"[A-Za-z_-]+=", line), (example.name, line)
    objects = render(secrets_dir)
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    keys = {(o["kind"], o["metadata"]["name"]): set(o["data"]) for o in objects}
    # The names and keys the compiled pipeline refers to (pipelines/platform.py).
    assert keys == {("Secret", "postergenre-tmdb"): set(TMDB_SECRET_KEYS),
                    ("Secret", "postergenre-s3"): set(S3_SECRET_KEYS),
                    ("ConfigMap", "postergenre-s3"): set(S3_CONFIG_KEYS)}
    # Filled-in values are ignored by git, so they cannot be committed by accident.
    ignored = subprocess.run(["git", "check-ignore", "-q", str(K8S / "secrets" / "s3.env")],
                             cwd=K8S, check=False)
    assert ignored.returncode == 0


# The object store's Service in `kubeflow` and its ports, as the KFP release that
# k8s/overlays/kfp-standalone installs ships it (kubeflow/pipelines 2.17.0,
# manifests/kustomize/third-party/seaweedfs/base/seaweedfs/seaweedfs-service.yaml; 2.15.0
# added SeaweedFS with a minio-service alias, which 2.16.0 dropped).
OBJECT_STORE_SERVICES = {"2.17.0": {"seaweedfs": {8111, 8333, 9000, 9333, 19333, 18888, 8888}}}


def test_the_endpoint_example_names_the_installed_object_store():
    """The first in-cluster endpoint the S3 endpoint template suggests is a Service and
    port of the KFP release the project installs."""
    text = (K8S / "secrets/s3-endpoint.env.example").read_text()
    service, port = re.search(r"http://([a-z0-9-]+)\.kubeflow:(\d+)", text).groups()
    assert int(port) in OBJECT_STORE_SERVICES[LATEST_BACKEND][service]


def test_kfp_install_is_pinned_to_a_backend_release():
    """kubeflow/pipelines tags backend releases X.Y.Z and SDK releases sdk-X.Y.Z: the SDK's
    2.17.3 has no backend tag. The install pins the newest backend release (2.17.0, the
    tag checked in the repository), of the SDK's minor version."""
    refs = []
    for path in (K8S / "overlays/kfp-standalone").rglob("kustomization.yaml"):
        for resource in yaml.safe_load(path.read_text())["resources"]:
            if resource.startswith("github.com/kubeflow/pipelines/"):
                refs.append(resource)
    assert len(refs) == 2
    for ref in refs:
        assert ref.endswith(f"?ref={LATEST_BACKEND}"), ref
    assert LATEST_BACKEND == BACKEND_RELEASES[-1] == max(BACKEND_RELEASES, key=version_key)
    assert version_key(LATEST_BACKEND)[:2] == version_key(kfp.__version__)[:2]
    assert kfp_kubernetes.__version__ == kfp.__version__
    assert any("cluster-scoped-resources" in r for r in refs)
    assert any("env/platform-agnostic" in r for r in refs)


@pytest.mark.slow
def test_checkov_finds_nothing_unjustified(tmp_path):
    """Run checkov (a security linter) over the rendered manifests when it is installed
    (it is heavy, so not a project dependency: docs/kubeflow.md says how);
    skipped checks carry their reason in the manifests' checkov annotations."""
    checkov = shutil.which("checkov")
    if checkov is None:
        pytest.skip("checkov not installed (pip install checkov in a separate venv)")
    # The overlays are what gets applied (base has no namespace of its own).
    for name in LOCAL[1:]:
        (tmp_path / f"{name.replace('/', '_')}.yaml").write_text(
            yaml.safe_dump_all(render(K8S / name)))
    (tmp_path / "gpu-check.yaml").write_text(yaml.safe_dump_all(_gpu_check(
        tmp_path, "--gpu-image", "r.example/gpu@sha256:" + "e" * 64)))
    done = subprocess.run([checkov, "-d", str(tmp_path), "--framework", "kubernetes",
                           "--compact", "--quiet", "--skip-download"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
