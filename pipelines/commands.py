"""`postergenre pipeline ...`: the flags and the dispatch (cli.py only hooks this in).

compile  -> the YAML IR with the cluster settings (platform.ClusterSettings)
run      -> the whole pipeline locally (kfp.local)
submit   -> a run on a cluster (--watch to follow it, --schedule CRON for a recurring run)
upload   -> a new version of a pipeline on a cluster
Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# Exit codes of `submit --watch` beside 0 (succeeded) and 2 (bad input).
EXIT_RUN_FAILED = 1
EXIT_CONNECTION_LOST = 3


def _pair(value: str) -> tuple[str, str]:
    """`request:limit` -> (request, limit); one value means both."""
    request, _, limit = value.partition(":")
    if not request:
        raise argparse.ArgumentTypeError(f"expected REQUEST[:LIMIT], got {value!r}")
    return request, limit or request


def _node_selector(value: str) -> tuple[str, str] | None:
    """KEY=VALUE, none, or a shortcut: nvidia, gke[:ACCELERATOR], eks[:NODEGROUP]."""
    from postergenre.pipelines.platform import NODE_SELECTOR_SHORTCUTS

    if value.lower() == "none":
        return None
    name, colon, label_value = value.partition(":")
    if "=" not in value and name.lower() in NODE_SELECTOR_SHORTCUTS:
        key, default = NODE_SELECTOR_SHORTCUTS[name.lower()]
        if colon and not label_value:
            raise argparse.ArgumentTypeError(f"{value!r}: give the value after the colon")
        return key, label_value or default
    key, sep, label = value.partition("=")
    if not sep or not key or not label:
        raise argparse.ArgumentTypeError(f"expected LABEL_KEY=VALUE, gke[:TYPE], "
                                         f"eks[:NODEGROUP], nvidia or none, got {value!r}")
    return key, label


def _version(value: str) -> str:
    from postergenre.pipelines.compat import version_key

    try:
        version_key(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a version such as 2.15.0, got "
                                         f"{value!r}") from None
    return value.lstrip("v")


def _add_compile_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster settings (compiled into the YAML)")
    g.add_argument("--registry", help="image registry, e.g. ghcr.io/acme: images are "
                   "REGISTRY/postergenre:TAG and REGISTRY/postergenre-gpu:TAG")
    g.add_argument("--tag", default=None, help="image tag (default: the package version)")
    g.add_argument("--image", default=None, help="CPU image, full reference (digest welcome: "
                   "...@sha256:...); overrides --registry/--tag")
    g.add_argument("--gpu-image", default=None, help="GPU image for the training tasks")
    g.add_argument("--gpu-type", default="nvidia.com/gpu", help="accelerator resource name")
    g.add_argument("--gpu-count", type=int, default=1, help="GPUs per training task")
    g.add_argument("--node-selector", type=_node_selector, default="nvidia.com/gpu.present=true",
                   metavar="KEY=VALUE", help="GPU node-pool label; default "
                   "nvidia.com/gpu.present=true (NVIDIA's GPU operator only); 'gke[:TYPE]' "
                   "is cloud.google.com/gke-accelerator=TYPE (default nvidia-l4), "
                   "'eks[:GROUP]' eks.amazonaws.com/nodegroup=GROUP (default gpu), 'none' "
                   "for no selector")
    g.add_argument("--no-gpu-toleration", dest="gpu_toleration", action="store_false",
                   help="do not tolerate the nvidia.com/gpu:NoSchedule taint")
    g.add_argument("--shm-size", default="8Gi", help="/dev/shm (memory) of training tasks")
    g.add_argument("--cpu", type=_pair, default=("1", "2"), metavar="REQ[:LIM]",
                   help="CPU of every non-training task")
    g.add_argument("--memory", type=_pair, default=("4G", "8G"), metavar="REQ[:LIM]")
    g.add_argument("--gpu-task-cpu", type=_pair, default=("4", "8"), metavar="REQ[:LIM]")
    g.add_argument("--gpu-task-memory", type=_pair, default=("16G", "32G"), metavar="REQ[:LIM]")
    g.add_argument("--tmdb-secret", default="postergenre-tmdb", help="Secret with the TMDb "
                   "keys api-key / read-access-token ('' for none)")
    g.add_argument("--s3-secret", default="postergenre-s3", help="Secret with "
                   "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, given to ingest, train, "
                   "evaluate and register as POSTERGENRE_AWS_* ('' for none: IRSA / Workload "
                   "Identity, where the runs' service account has S3 access)")
    g.add_argument("--s3-config-map", default="postergenre-s3", help="ConfigMap with "
                   "AWS_ENDPOINT_URL (MinIO or another S3-compatible store; '' for none)")
    g.add_argument("--image-pull-secret", dest="image_pull_secrets", action="append",
                   default=[], metavar="NAME", help="Secret for pulling the images from a "
                   "private registry (repeatable)")
    g.add_argument("--model-registry", default=None, metavar="URI", help="default of the run "
                   "parameter `registry`, e.g. s3://bucket/postergenre/registry (without it "
                   "every run must pass -p registry=...)")
    g.add_argument("--no-require-gpu", dest="require_gpu", action="store_false",
                   help="let training run on the CPU when the pod sees no GPU (default: "
                   "fail at once)")
    g.add_argument("--retries", type=int, default=2, help="retries of a failed task")
    g.add_argument("--retry-backoff", default="60s", metavar="DURATION",
                   help="wait before the first retry")
    g.add_argument("--retry-backoff-factor", type=float, default=2.0,
                   help="each further wait is this many times longer")
    g.add_argument("--retry-backoff-max", default="12h", metavar="DURATION",
                   help="no retry after this long")
    b = p.add_argument_group("settings only newer Kubeflow Pipelines backends understand "
                             "(off by default: the pipeline then runs on KFP 2.14.0+)")
    b.add_argument("--kfp-backend", type=_version, default=None, metavar="VERSION",
                   help="turn on every setting below that this KFP backend version knows "
                   "(and refuse one it does not), e.g. 2.16.0")
    b.add_argument("--security-context", action=argparse.BooleanOptionalAction, default=None,
                   help="runAsUser/runAsGroup 10001 and runAsNonRoot on every task (KFP "
                   "2.16.0+; without it tasks run as the image's USER 10001 all the same)")
    b.add_argument("--optional-secrets", action=argparse.BooleanOptionalAction, default=None,
                   help="the TMDb and S3 Secrets and the S3 ConfigMap may be missing (KFP "
                   "2.15.0+; without it they must exist, even if empty)")
    g.add_argument("--pipeline-root", default=None, help="where KFP writes artifacts, e.g. "
                   "s3://bucket/postergenre (default: the cluster's)")
    g.add_argument("--no-cache", dest="caching", action="store_false",
                   help="no task reuses a cached result")
    g.add_argument("--cache-ingest", action="store_true", help="cache ingest too (only for "
                   "data pinned by data_version; a TMDb crawl must not be cached)")


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Kubeflow Pipelines API")
    g.add_argument("--package", default=None, help="a compiled pipeline YAML to use "
                   "(default: compile one now with the settings above)")
    g.add_argument("--host", default=os.environ.get("KF_PIPELINES_ENDPOINT"),
                   help="KFP API URL, e.g. http://localhost:8888 after `kubectl port-forward "
                   "-n kubeflow svc/ml-pipeline 8888` (default: $KF_PIPELINES_ENDPOINT, else "
                   "the in-cluster service)")
    g.add_argument("--namespace", default=None, help="profile namespace (multi-user KFP only)")
    g.add_argument("--auth", choices=["auto", "token", "service-account", "none"],
                   default="auto", help="auto: a token from --token-env if set, else the "
                   "pod's service-account token if present, else none")
    g.add_argument("--token-env", default="KFP_TOKEN",
                   help="environment variable holding a bearer token (never a flag value)")
    g.add_argument("--token-file", default=None, help="service-account token file (default: "
                   "$KF_PIPELINES_SA_TOKEN_PATH or KFP's projected token)")
    g.add_argument("--cookie-env", default=None, metavar="NAME",
                   help="environment variable holding a session cookie, NAME=VALUE, e.g. "
                   "Dex's authservice_session or oauth2-proxy's (never a flag value)")
    g.add_argument("--ca-cert", default=None, metavar="FILE",
                   help="CA bundle (PEM) that signed the API's TLS certificate")
    g.add_argument("--ui-url", default=None, metavar="URL", help="the KFP UI, for the printed "
                   "links (default: $KF_PIPELINES_UI_ENDPOINT, else derived from --host: "
                   "http://localhost:8080 for a port-forward of the API on 8888)")


def _add_experiment_flags(p: argparse.ArgumentParser) -> None:
    from postergenre.typed_config import add_params_flags

    g = p.add_argument_group("experiment (the defaults of the pipeline's section parameters)")
    add_params_flags(g, "override one setting, e.g. --set augment.image_size=32 or --set "
                     "models.scratch_cnn.epochs=2")


def experiment_from_args(args: argparse.Namespace):
    """The run's params files merged (later wins) with --set applied, validated whole."""
    from postergenre.configs import load_experiment

    return load_experiment(args.params, args.overrides)


def add_pipeline_parser(sub, parents: list | None = None) -> None:
    """The `pipeline` subcommand and its actions, on cli.py's subparsers."""
    parents = parents or []
    p = sub.add_parser("pipeline", help="compile, run, submit or upload the Kubeflow pipeline",
                       parents=parents)
    psub = p.add_subparsers(dest="pipeline_command", required=True, metavar="ACTION")

    c = psub.add_parser("compile", help="write the pipeline's YAML IR", parents=parents)
    c.add_argument("--output", default="pipeline.yaml", help="YAML file to write")
    _add_experiment_flags(c)
    _add_compile_flags(c)

    r = psub.add_parser("run", help="run the whole pipeline locally", parents=parents)
    r.add_argument("--local", action="store_true", required=True,
                   help="run with kfp.local's SubprocessRunner, no cluster")
    r.add_argument("--pipeline-root", default="outputs/kfp-local",
                   help="where local artifacts go")
    r.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="pipeline parameter (repeatable), e.g. -p source=demo or -p "
                   "'gate={\"epsilon\": 0.1}' (a whole section, JSON)")
    _add_experiment_flags(r)

    s = psub.add_parser("submit", help="run the pipeline on a Kubeflow cluster",
                        parents=parents)
    _add_experiment_flags(s)
    _add_compile_flags(s)
    _add_server_flags(s)
    s.add_argument("--experiment", default="postergenre")
    s.add_argument("--run-name", default=None)
    s.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="pipeline parameter (repeatable), e.g. -p data_version=<md5>")
    s.add_argument("--service-account", default=None,
                   help="Kubernetes service account the run's pods use (k8s/: "
                   "postergenre-runner)")
    s.add_argument("--watch", action="store_true", help="follow the run to its end; exit 1 "
                   "if it fails, 3 if the API is lost")
    s.add_argument("--poll", type=float, default=10.0, help="seconds between --watch polls")
    s.add_argument("--schedule", metavar="CRON", default=None,
                   help="create a recurring run instead, e.g. '0 3 * * 1' (Mondays 03:00)")

    u = psub.add_parser("upload", help="upload the pipeline as a new version",
                        parents=parents)
    _add_experiment_flags(u)
    _add_compile_flags(u)
    _add_server_flags(u)
    u.add_argument("--name", default="postergenre", help="pipeline name in the UI")
    u.add_argument("--version", default=None,
                   help="version name (default: v<package version>-<UTC time>)")
    u.add_argument("--description", default=None)


def cluster_settings(args: argparse.Namespace):
    """The compile flags -> ClusterSettings (a ValueError names a bad one)."""
    from postergenre import __version__
    from postergenre.components import DEFAULT_GPU_IMAGE, DEFAULT_IMAGE
    from postergenre.pipelines.compat import version_key
    from postergenre.pipelines.platform import BACKEND_FEATURES, ClusterSettings, Resources

    tag = args.tag or __version__
    if args.registry:
        registry = args.registry.rstrip("/")
        sep = "@" if tag.startswith("sha256:") else ":"
        image, gpu_image = (f"{registry}/postergenre{sep}{tag}",
                            f"{registry}/postergenre-gpu{sep}{tag}")
    else:
        image, gpu_image = DEFAULT_IMAGE, DEFAULT_GPU_IMAGE
    features = (ClusterSettings.features_for(args.kfp_backend) if args.kfp_backend
                else dict.fromkeys(BACKEND_FEATURES, False))
    for name in BACKEND_FEATURES:
        if getattr(args, name) is not None:
            features[name] = getattr(args, name)
    settings = ClusterSettings(
        image=args.image or image, gpu_image=args.gpu_image or gpu_image,
        gpu_type=args.gpu_type, gpu_count=args.gpu_count, node_selector=args.node_selector,
        gpu_toleration=args.gpu_toleration, shm_size=args.shm_size,
        cpu_resources=Resources(*args.cpu, *args.memory),
        gpu_resources=Resources(*args.gpu_task_cpu, *args.gpu_task_memory),
        tmdb_secret=args.tmdb_secret, s3_secret=args.s3_secret,
        s3_config_map=args.s3_config_map, pipeline_root=args.pipeline_root,
        caching=args.caching, cache_ingest=args.cache_ingest,
        model_registry=args.model_registry, image_pull_secrets=tuple(args.image_pull_secrets),
        require_gpu=args.require_gpu, retries=args.retries, retry_backoff=args.retry_backoff,
        retry_backoff_factor=args.retry_backoff_factor,
        retry_backoff_max=args.retry_backoff_max, **features)
    if args.kfp_backend and version_key(settings.min_backend_version()) > version_key(
            args.kfp_backend):
        too_new = [BACKEND_FEATURES[n].flag for n in settings.features()
                   if version_key(BACKEND_FEATURES[n].since) > version_key(args.kfp_backend)]
        raise ValueError(f"--kfp-backend {args.kfp_backend}: {', '.join(too_new)} needs "
                         f"{settings.min_backend_version()} or newer")
    return settings


def _package(args: argparse.Namespace, workdir: str) -> str:
    if args.package:
        return args.package
    from postergenre.pipelines.runner import compile_pipeline

    return str(compile_pipeline(Path(workdir) / "pipeline.yaml", cluster_settings(args),
                                experiment_from_args(args)))


def _warn(args: argparse.Namespace, message: str) -> None:
    print(f"postergenre pipeline {args.pipeline_command}: warning: {message}", file=sys.stderr)


def _client(args: argparse.Namespace, package: str):
    """A checked kfp.Client: the server answers, and its KFP version runs `package`."""
    from postergenre.pipelines import submit

    auth = submit.Auth.resolve(args.auth, args.token_env, args.token_file, args.cookie_env)
    host = (args.host or submit.IN_CLUSTER_HOST).rstrip("/")

    def check(health: dict) -> None:
        warning = submit.check_backend(health, package, host)
        if warning:
            _warn(args, warning)

    return submit.connect(args.host, auth, args.namespace, ca_cert=args.ca_cert, check=check)


def _submit(args: argparse.Namespace) -> int:
    from postergenre.pipelines import submit

    with tempfile.TemporaryDirectory() as workdir:
        package = _package(args, workdir)
        params = submit.checked_params(package, args.param)
        submit.check_package(package, params)
        job = submit.Submission(
            package=package, params=params,
            experiment=args.experiment, run_name=args.run_name, namespace=args.namespace,
            pipeline_root=args.pipeline_root,
            # --no-cache also overrides a precompiled package's per-task settings.
            enable_caching=None if args.caching else False,
            service_account=args.service_account)
        if args.schedule:
            submit.cron_for_kfp(args.schedule)  # a bad expression before any network
        client = _client(args, package)
        ui = submit.ui_url(args.host, args.ui_url)
        if args.schedule:
            recurring_id = submit.schedule(client, job, args.schedule)
            print(f"recurring run {recurring_id}: {submit.cron_for_kfp(args.schedule)} "
                  f"({ui}/#/recurringrun/details/{recurring_id})")
            return 0
        run_id = submit.submit(client, job)
    print(f"run {run_id}: {submit.run_url(ui, run_id)}")
    if not args.watch:
        return 0
    state = submit.watch_run(client, run_id, poll_s=args.poll)
    return 0 if state == "SUCCEEDED" else EXIT_RUN_FAILED


def _upload(args: argparse.Namespace) -> int:
    from postergenre import __version__
    from postergenre.pipelines import submit

    version = args.version or f"v{__version__}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    with tempfile.TemporaryDirectory() as workdir:
        package = _package(args, workdir)
        for warning in submit.check_package(package, {}, run=False):
            _warn(args, warning)
        client = _client(args, package)
        pipeline_id, version_id = submit.upload(client, package, args.name, version,
                                                args.description, args.namespace)
    ui = submit.ui_url(args.host, args.ui_url)
    print(f"pipeline {args.name!r} ({pipeline_id}) version {version!r} ({version_id}): "
          f"{ui}/#/pipelines/details/{pipeline_id}")
    return 0


def run_pipeline_command(args: argparse.Namespace) -> int:
    """Dispatch `postergenre pipeline ACTION`; KFP API failures -> one line and exit code."""
    from postergenre.pipelines import runner, submit

    try:
        if args.pipeline_command == "compile":
            settings = cluster_settings(args)
            for warning in settings.warnings():
                _warn(args, warning)
            path = runner.compile_pipeline(args.output, settings, experiment_from_args(args))
            print(f"wrote {path}: {settings.backend_note()}")
            return 0
        if args.pipeline_command == "run":
            experiment = experiment_from_args(args)
            outputs = runner.run_local(args.pipeline_root, experiment,
                                       **runner.parse_params(args.param, experiment))
            # The run's answer, after the task logs: the decision and why.
            print(f"\ngate: {outputs['decision']}"
                  + (f" {outputs['model']}" if outputs["model"] else ""))
            for line in outputs["failed_rules"]:
                print(f"  failed: {line}")
            print(f"artifacts: {outputs['run_dir']}")
            return 0
        if args.pipeline_command == "submit":
            return _submit(args)
        return _upload(args)
    except submit.ConnectionLostError as err:
        print(f"postergenre pipeline {args.pipeline_command}: error: {err}", file=sys.stderr)
        return EXIT_CONNECTION_LOST
    except submit.KfpError as err:
        print(f"postergenre pipeline {args.pipeline_command}: error: {err}", file=sys.stderr)
        return 2
