"""`postergenre pipeline ...`: the flags and the dispatch (cli.py only hooks this in).

compile  -> the YAML IR with the cluster settings (platform.ClusterSettings, whose
            fields make the cluster flags)
run      -> the whole pipeline locally (kfp.local)
submit   -> a run on a cluster (--watch to follow it, --schedule CRON for a recurring run)
gpu-check -> a Job that checks the GPU node pool with the same settings
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
    g.add_argument("--allow-image-tags", action="store_true", help="run images given by "
                   "tag (refused by default: KFP's cache key holds the image reference, so "
                   "a tag pushed again reuses the old code's cached results)")
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
    from postergenre.pipelines.platform import add_cluster_flags

    parents = parents or []
    p = sub.add_parser("pipeline", help="compile, run, submit or upload the Kubeflow pipeline",
                       parents=parents)
    psub = p.add_subparsers(dest="pipeline_command", required=True, metavar="ACTION")

    c = psub.add_parser("compile", help="write the pipeline's YAML IR", parents=parents)
    c.add_argument("--output", default="pipeline.yaml", help="YAML file to write")
    _add_experiment_flags(c)
    add_cluster_flags(c)

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
    add_cluster_flags(s)
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

    g = psub.add_parser("gpu-check", help="write a Job that checks the GPU node pool: it "
                        "lands where the training tasks land and runs the GPU image's check",
                        parents=parents)
    g.add_argument("--namespace", default="kubeflow", help="where the Job runs (a profile "
                   "namespace on multi-user Kubeflow)")
    g.add_argument("--output", default="-", help="YAML file to write ('-': standard "
                   "output, e.g. | kubectl apply -f -)")
    add_cluster_flags(g)

    u = psub.add_parser("upload", help="upload the pipeline as a new version",
                        parents=parents)
    _add_experiment_flags(u)
    add_cluster_flags(u)
    _add_server_flags(u)
    u.add_argument("--name", default="postergenre", help="pipeline name in the UI")
    u.add_argument("--version", default=None,
                   help="version name (default: v<package version>-<UTC time>)")
    u.add_argument("--description", default=None)


def cluster_settings(args: argparse.Namespace):
    """The compile flags -> ClusterSettings (a ValueError names a bad one)."""
    from postergenre.pipelines.platform import settings_from_args

    return settings_from_args(args)


def _package(args: argparse.Namespace, workdir: str, settings) -> str:
    """The package to run or upload: --package, else one compiled now; with --no-cache,
    one in which no task of any DAG reuses a cached result."""
    from postergenre.pipelines.runner import compile_pipeline, write_uncached

    if not args.package:
        return str(compile_pipeline(Path(workdir) / "pipeline.yaml", settings,
                                    experiment_from_args(args)))
    if settings.caching:
        return args.package
    return str(write_uncached(args.package, Path(workdir) / "uncached.yaml"))


def _warn(args: argparse.Namespace, message: str) -> None:
    print(f"postergenre pipeline {args.pipeline_command}: warning: {message}", file=sys.stderr)


def _client(args: argparse.Namespace, package: str):
    """A checked kfp.Client: the server answers, and its KFP version runs `package`."""
    from postergenre.pipelines import submit

    auth = submit.Auth.resolve(args.auth, args.token_env, args.token_file, args.cookie_env)
    host = (args.host or submit.IN_CLUSTER_HOST).rstrip("/")

    def check(health: dict) -> None:
        for warning in submit.check_backend(health, package, host):
            _warn(args, warning)

    return submit.connect(args.host, auth, args.namespace, ca_cert=args.ca_cert, check=check)


def _submit(args: argparse.Namespace) -> int:
    from postergenre.pipelines import submit

    settings = cluster_settings(args)
    with tempfile.TemporaryDirectory() as workdir:
        package = _package(args, workdir, settings)
        params = submit.checked_params(package, args.param)
        for warning in submit.check_package(package, params,
                                            allow_tags=args.allow_image_tags):
            _warn(args, warning)
        job = submit.Submission(
            package=package, params=params,
            experiment=args.experiment, run_name=args.run_name, namespace=args.namespace,
            pipeline_root=settings.pipeline_root or None,
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
        package = _package(args, workdir, cluster_settings(args))
        for warning in submit.check_package(package, {}, run=False,
                                            allow_tags=args.allow_image_tags):
            _warn(args, warning)
        client = _client(args, package)
        pipeline_id, version_id = submit.upload(client, package, args.name, version,
                                                args.description, args.namespace)
    ui = submit.ui_url(args.host, args.ui_url)
    print(f"pipeline {args.name!r} ({pipeline_id}) version {version!r} ({version_id}): "
          f"{ui}/#/pipelines/details/{pipeline_id}")
    return 0


def _gpu_check(args: argparse.Namespace) -> int:
    import yaml

    from postergenre.pipelines.platform import DEFAULT_GPU_IMAGE, gpu_check_manifests

    settings = cluster_settings(args)
    if settings.gpu_image == DEFAULT_GPU_IMAGE:
        _warn(args, f"--gpu-image: the placeholder {DEFAULT_GPU_IMAGE} is published by "
              "nothing; pass the image you pushed (--registry REGISTRY [--tag TAG] or "
              "--gpu-image)")
    text = yaml.safe_dump_all(gpu_check_manifests(settings, args.namespace), sort_keys=False)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}: kubectl apply -f {args.output} && kubectl -n "
              f"{args.namespace} logs -f job/postergenre-gpu-check", file=sys.stderr)
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
        if args.pipeline_command == "gpu-check":
            return _gpu_check(args)
        if args.pipeline_command == "submit":
            return _submit(args)
        return _upload(args)
    except submit.ConnectionLostError as err:
        print(f"postergenre pipeline {args.pipeline_command}: error: {err}", file=sys.stderr)
        return EXIT_CONNECTION_LOST
    except submit.KfpError as err:
        print(f"postergenre pipeline {args.pipeline_command}: error: {err}", file=sys.stderr)
        return 2
