"""Talk to a Kubeflow Pipelines API server: submit a run, follow it, schedule it, upload
a pipeline version. The real `kfp.Client` does the calls; this module adds what a
platform team needs around it: auth from a token or the pod's service account (never
from a flag, so no token lands in shell history), one clear line for an unreachable
host, rejected credentials or an unknown parameter, and `watch_run`, which survives
short network losses and says so when it gives up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import kfp_server_api
import urllib3

from postergenre.pipelines.runner import load_spec, parse_spec_params

log = logging.getLogger(__name__)

IN_CLUSTER_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
# Where KFP projects the run's service-account token in a pod (kfp.client's default).
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
DEFAULT_TOKEN_ENV = "KFP_TOKEN"
FINAL_STATES = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"}


class KfpError(RuntimeError):
    """A failure talking to the KFP API, worded for the person at the terminal."""


class ConnectionLostError(KfpError):
    """--watch lost the API server for longer than it waits; the run itself goes on."""


@dataclass(frozen=True)
class Auth:
    """How to authenticate: a bearer token (from an env variable) or the pod's projected
    service-account token file (re-read on every call, as it rotates)."""

    token: str | None = None
    token_file: str | None = None

    @classmethod
    def resolve(cls, mode: str = "auto", token_env: str = DEFAULT_TOKEN_ENV,
                token_file: str | None = None) -> Auth:
        token_file = token_file or os.environ.get("KF_PIPELINES_SA_TOKEN_PATH") or SA_TOKEN_PATH
        if mode in ("auto", "token") and os.environ.get(token_env):
            return cls(token=os.environ[token_env])
        if mode == "token":
            raise KfpError(f"--auth token: the environment variable {token_env} is empty")
        if mode in ("auto", "service-account") and Path(token_file).is_file():
            return cls(token_file=token_file)
        if mode == "service-account":
            raise KfpError(f"--auth service-account: no token file at {token_file} (is this "
                           "a pod with KFP's projected service-account token?)")
        return cls()

    def header(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.token_file:
            return {"Authorization": f"Bearer {Path(self.token_file).read_text().strip()}"}
        return {}

    def describe(self) -> str:
        if self.token:
            return "a bearer token"
        return f"the service-account token {self.token_file}" if self.token_file else "no auth"


def check_server(host: str, auth: Auth, timeout: float = 10.0) -> dict:
    """GET the healthz endpoint once, so that a wrong host or bad credentials fail fast
    with one clear line (kfp.Client itself retries healthz for ~25 s, then says little)."""
    url = f"{host.rstrip('/')}/apis/v2beta1/healthz"
    request = urllib.request.Request(url, headers=auth.header())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            raise KfpError(f"{host} rejected the credentials (HTTP {err.code}, sent "
                           f"{auth.describe()}): check the token or the service account's "
                           "RBAC (k8s/base/rbac.yaml)") from None
        raise KfpError(f"{url} answered HTTP {err.code}: is {host} the KFP API "
                       "(ml-pipeline service, port 8888)?") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise KfpError(f"cannot reach the Kubeflow Pipelines API at {host}: {reason}") from None
    except json.JSONDecodeError:
        raise KfpError(f"{url} did not answer JSON: is {host} the KFP API?") from None


def connect(host: str | None, auth: Auth, namespace: str | None = None):
    """A `kfp.Client` for `host` (in-cluster DNS name if None), checked with healthz."""
    import kfp
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    host = (host or IN_CLUSTER_HOST).rstrip("/")
    if "://" not in host:
        raise KfpError(f"--host {host!r}: give the scheme, e.g. http://localhost:8080")
    check_server(host, auth)
    kwargs: dict = {"host": host}
    if auth.token:
        kwargs["existing_token"] = auth.token
    elif auth.token_file:
        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(path=auth.token_file)
    if namespace:
        kwargs["namespace"] = namespace
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP >= 2.0.0-beta.2"
        return kfp.Client(**kwargs)


def _api_call(what: str, call: Callable, *args, **kwargs):
    """Run one kfp.Client call; turn API and network errors into one KfpError line."""
    try:
        return call(*args, **kwargs)
    except kfp_server_api.ApiException as err:
        detail = err.body
        with contextlib.suppress(TypeError, ValueError, AttributeError):
            detail = json.loads(err.body).get("message", err.body)
        if err.status in (401, 403):
            raise KfpError(f"{what}: the KFP API rejected the credentials (HTTP "
                           f"{err.status}): {detail}") from None
        raise KfpError(f"{what}: the KFP API answered HTTP {err.status}: {detail}") from None
    except urllib3.exceptions.HTTPError as err:
        raise KfpError(f"{what}: lost the KFP API: {err}") from None


def run_url(host: str, run_id: str) -> str:
    return f"{host.rstrip('/')}/#/runs/details/{run_id}"


@dataclass(frozen=True)
class Submission:
    """What `submit` / `schedule` need beside the client."""

    package: str
    params: Mapping[str, str | int | float | list | bool | dict]
    experiment: str = "postergenre"
    run_name: str | None = None
    namespace: str | None = None
    pipeline_root: str | None = None
    enable_caching: bool | None = None
    service_account: str | None = None


def checked_params(package: str, pairs: list[str]) -> dict:
    """`-p key=value` pairs typed and checked against the compiled package's parameters."""
    return parse_spec_params(pairs, load_spec(package))


def submit(client, job: Submission) -> str:
    """Create a run of the compiled package in `job.experiment` (created if missing);
    return the run id."""
    spec = load_spec(job.package)
    stamp = time.strftime("%Y-%m-%d %H-%M-%S")
    run_name = job.run_name or f"{spec['pipelineInfo']['name']} {stamp}"
    result = _api_call(
        "submit", client.create_run_from_pipeline_package, job.package,
        arguments=dict(job.params), run_name=run_name, experiment_name=job.experiment,
        namespace=job.namespace, pipeline_root=job.pipeline_root,
        enable_caching=job.enable_caching, service_account=job.service_account)
    return result.run_id


def cron_for_kfp(expression: str) -> str:
    """KFP's scheduler reads 6-field cron (seconds first); accept the usual 5 fields too."""
    fields = expression.split()
    if len(fields) == 5:
        return "0 " + expression.strip()
    if len(fields) == 6:
        return expression.strip()
    raise ValueError(f"--schedule {expression!r}: expected a cron expression of 5 fields "
                     "(minute hour day month weekday) or 6 (seconds first)")


def schedule(client, job: Submission, cron: str, max_concurrency: int = 1) -> str:
    """Create a recurring run (no catch-up of missed slots); return its id."""
    cron = cron_for_kfp(cron)
    experiment = _api_call("schedule", client.create_experiment, job.experiment,
                           namespace=job.namespace)
    name = job.run_name or f"{load_spec(job.package)['pipelineInfo']['name']} ({cron})"
    recurring = _api_call(
        "schedule", client.create_recurring_run, experiment.experiment_id, name,
        cron_expression=cron, params=dict(job.params), pipeline_package_path=job.package,
        pipeline_root=job.pipeline_root, enable_caching=job.enable_caching,
        service_account=job.service_account, max_concurrency=max_concurrency,
        no_catchup=True)
    return recurring.recurring_run_id


def upload(client, package: str, name: str, version: str,
           description: str | None = None) -> tuple[str, str]:
    """Upload `package` as version `version` of pipeline `name` (the pipeline is created
    on first upload); return (pipeline id, version id)."""
    load_spec(package)  # a clear error before any upload
    pipeline_id = _api_call("upload", client.get_pipeline_id, name)
    if pipeline_id is None:
        pipeline = kfp_server_api.V2beta1Pipeline(display_name=name, description=description)
        created = _api_call("upload", client.pipelines.pipeline_service_create_pipeline,
                            pipeline=pipeline)
        pipeline_id = created.pipeline_id
    result = _api_call("upload", client.upload_pipeline_version, package, version,
                       pipeline_id=pipeline_id, description=description)
    return pipeline_id, result.pipeline_version_id


def watch_run(client, run_id: str, *, poll_s: float = 10.0, max_misses: int = 6,
              timeout_s: float | None = None, echo: Callable[[str], None] = print) -> str:
    """Follow a run until it ends; return its final state (SUCCEEDED, FAILED, ...).

    A lost connection is retried `max_misses` times in a row (backing off up to a
    minute) before ConnectionLostError; the run goes on on the cluster either way.
    """
    start, misses, last = time.monotonic(), 0, None
    while True:
        try:
            run = client.get_run(run_id)
            misses = 0
        except (urllib3.exceptions.HTTPError, kfp_server_api.ApiException) as err:
            status = getattr(err, "status", None)
            if status in (401, 403, 404):
                raise KfpError(f"watch {run_id}: the KFP API answered HTTP {status}") from None
            misses += 1
            if misses > max_misses:
                raise ConnectionLostError(f"lost the KFP API while watching run {run_id} "
                                     f"({misses} tries in a row failed: {err}); the run goes "
                                     "on on the cluster") from None
            wait = min(poll_s * 2 ** (misses - 1), 60.0)
            log.warning("watch %s: no answer (%s); try %d of %d in %.0f s", run_id,
                        type(err).__name__, misses, max_misses, wait)
            time.sleep(wait)
            continue
        state = str(run.state or "PENDING").upper()
        if state != last:
            echo(f"run {run_id}: {state}")
            last = state
        if state in FINAL_STATES:
            if state != "SUCCEEDED" and run.error is not None:
                echo(f"run {run_id}: {getattr(run.error, 'message', run.error)}")
            return state
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise KfpError(f"watch {run_id}: still {state} after {timeout_s:.0f} s")
        time.sleep(poll_s)
