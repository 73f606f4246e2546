"""Talk to a Kubeflow Pipelines API server: submit a run, follow it, schedule it, upload
a pipeline version. The real `kfp.Client` does the calls; this module adds what a
platform team needs around it: auth from a token, a session cookie or the pod's service
account (never from a flag, so no secret lands in shell history), a private CA, one
clear line for an unreachable host, rejected credentials, an unknown parameter, a
package the server's KFP version cannot run or one that cannot work on any cluster
(placeholder images, a model registry inside the pod), a link to the run in the UI, and
`watch_run`, which survives short network losses and says so when it gives up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import kfp_server_api
import urllib3

from postergenre.pipelines.compat import (
    BACKEND_RELEASES,
    HARDENING,
    HARDENING_SINCE,
    missing_on,
    required_backend,
    version_key,
)
from postergenre.pipelines.runner import load_package, load_spec, parse_spec_params

log = logging.getLogger(__name__)

IN_CLUSTER_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
IN_CLUSTER_UI = "http://ml-pipeline-ui.kubeflow.svc.cluster.local"
# docs/kubeflow.md's port-forward of the UI (`kubectl port-forward svc/ml-pipeline-ui 8080:80`),
# beside the API's on 8888.
LOCAL_UI = "http://localhost:8080"
UI_ENV = "KF_PIPELINES_UI_ENDPOINT"  # kfp.Client's variable for the same
# Where KFP projects the run's service-account token in a pod (kfp.client's default).
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
DEFAULT_TOKEN_ENV = "KFP_TOKEN"
FINAL_STATES = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"}
# The API server names its version in healthz's tag_name from a build argument that
# release builds pass from 2.16.0 on (kubeflow/pipelines 94841d6c85): 2.5.0 to 2.15.0
# answer 'unknown'. Its answer has had `pipeline_store` since 2.14.0 (ea20731060;
# backend/src/apiserver/main.go at 2.14.0 writes it on every answer, 2.5.0 and before
# never), which places such a server on one side of 2.14.0.
HEALTHZ_PROBE = ("pipeline_store", "2.14.0")


class KfpError(RuntimeError):
    """A failure talking to the KFP API, worded for the person at the terminal."""


class ConnectionLostError(KfpError):
    """--watch lost the API server for longer than it waits; the run itself goes on."""


@dataclass(frozen=True)
class Auth:
    """How to authenticate: a bearer token (from an env variable) or the pod's projected
    service-account token file (re-read on every call, as it rotates), and/or a session
    cookie (Dex / oauth2-proxy in front of a multi-user Kubeflow, from an env variable)."""

    token: str | None = None
    token_file: str | None = None
    cookie: str | None = None

    @classmethod
    def resolve(cls, mode: str = "auto", token_env: str = DEFAULT_TOKEN_ENV,
                token_file: str | None = None, cookie_env: str | None = None) -> Auth:
        cookie = None
        if cookie_env:
            cookie = os.environ.get(cookie_env)
            if not cookie:
                raise KfpError(f"--cookie-env {cookie_env}: the environment variable is "
                               "empty (export the session cookie as NAME=VALUE, e.g. "
                               "authservice_session=..., from the browser)")
        token_file = token_file or os.environ.get("KF_PIPELINES_SA_TOKEN_PATH") or SA_TOKEN_PATH
        if mode in ("auto", "token") and os.environ.get(token_env):
            return cls(token=os.environ[token_env], cookie=cookie)
        if mode == "token":
            raise KfpError(f"--auth token: the environment variable {token_env} is empty")
        if mode in ("auto", "service-account") and Path(token_file).is_file():
            return cls(token_file=token_file, cookie=cookie)
        if mode == "service-account":
            raise KfpError(f"--auth service-account: no token file at {token_file} (is this "
                           "a pod with KFP's projected service-account token?)")
        return cls(cookie=cookie)

    def header(self) -> dict[str, str]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.token_file:
            headers["Authorization"] = f"Bearer {Path(self.token_file).read_text().strip()}"
        return headers

    def describe(self) -> str:
        what = ("a bearer token" if self.token else
                f"the service-account token {self.token_file}" if self.token_file else "")
        if self.cookie:
            what = f"{what} and a session cookie" if what else "a session cookie"
        return what or "no auth"


def _ssl_context(ca_cert: str | None) -> ssl.SSLContext | None:
    if ca_cert is None:
        return None
    if not Path(ca_cert).is_file():
        raise KfpError(f"--ca-cert {ca_cert}: no such file")
    try:
        return ssl.create_default_context(cafile=ca_cert)
    except ssl.SSLError as err:
        raise KfpError(f"--ca-cert {ca_cert}: not a PEM certificate ({err})") from None


def check_server(host: str, auth: Auth, timeout: float = 10.0,
                 ca_cert: str | None = None) -> dict:
    """GET the healthz endpoint once, so that a wrong host or bad credentials fail fast
    with one clear line (kfp.Client itself retries healthz for ~25 s, then says little).
    Returns its JSON: `tag_name` is the server's KFP version."""
    url = f"{host.rstrip('/')}/apis/v2beta1/healthz"
    request = urllib.request.Request(url, headers=auth.header())
    context = _ssl_context(ca_cert)
    try:
        with urllib.request.urlopen(request, timeout=timeout,  # noqa: S310
                                    context=context) as response:
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
        hint = (" (a private CA? --ca-cert FILE)" if isinstance(reason, ssl.SSLError)
                and "CERTIFICATE_VERIFY_FAILED" in str(reason) else "")
        raise KfpError(f"cannot reach the Kubeflow Pipelines API at {host}: {reason}"
                       f"{hint}") from None
    except json.JSONDecodeError:
        raise KfpError(f"{url} did not answer JSON: is {host} the KFP API?") from None


def server_version(health: Mapping) -> str | None:
    """The KFP version a healthz answer names (`tag_name`), None if it names none."""
    tag = str(health.get("tag_name") or "")
    try:
        version_key(tag)
    except ValueError:
        return None
    return tag.lstrip("v")


def server_floor(health: Mapping) -> tuple[str, bool]:
    """What a healthz answer that names no version (server_version None) says about the
    server: (HEALTHZ_PROBE's release, True) when it is that release or newer, (the last
    release before it, False) when it is that one or older."""
    field, since = HEALTHZ_PROBE
    if field in health:
        return since, True
    return max((r for r in BACKEND_RELEASES if version_key(r) < version_key(since)),
               key=version_key), False


def check_backend(health: Mapping, package: str, host: str = "the server") -> list[str]:
    """Refuse (KfpError, one line) a compiled package that uses what the server's KFP
    version lacks; return warnings. A server that names no version is placed by
    HEALTHZ_PROBE: refused when it is older than the pipeline's floor can be, a warning
    when the pipeline needs more than the probe proves (that floor is then not checked).
    A server older than HARDENING_SINCE runs the tasks without HARDENING: a warning."""
    from postergenre.pipelines.platform import BACKEND_FEATURES

    spec, platform = load_package(package)
    needed, _ = required_backend(spec, platform)
    version = server_version(health)
    named = f"{host} names no KFP version (healthz tag_name {health.get('tag_name')!r})"
    if version is None:
        floor, at_least = server_floor(health)
        if at_least and version_key(needed) <= version_key(floor):
            return [_unhardened(f"{host} (KFP {floor} or newer)")]
        if at_least:
            return [f"{named}; it answers as KFP {floor} or newer, and this pipeline needs "
                    f"{needed} or newer, which was not checked: a backend older than "
                    f"{needed} refuses the run or fails its tasks"]
        version, runs = floor, f"and answers as KFP {floor} or older (no {HEALTHZ_PROBE[0]} " \
                               f"in healthz, which {HEALTHZ_PROBE[1]} added)"
        host = named
    else:
        runs = f"runs Kubeflow Pipelines {version}"
    missing = missing_on(version, spec, platform)
    if not missing:
        return ([_unhardened(f"{host} (KFP {version})")]
                if version_key(version) < version_key(HARDENING_SINCE) else [])
    flags = [f.flag for f in BACKEND_FEATURES.values()
             if version_key(f.since) > version_key(version)]
    shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3
                                      else "")
    raise KfpError(f"{host} {runs}, this pipeline needs {needed} "
                   f"or newer (it uses {shown}): compile it without "
                   f"{' / '.join(flags) or 'those settings'}, or upgrade the backend")


def _unhardened(server: str) -> str:
    return (f"{server} may run the tasks without {', '.join(HARDENING)}: KFP sets them on "
            f"every task from {HARDENING_SINCE} on, and a pipeline cannot ask for them")


def check_package(package: str, params: Mapping, *, run: bool = True,
                  allow_tags: bool = False) -> list[str]:
    """What makes a compiled package fail on any cluster: placeholder images (an error),
    images given by tag (an error unless `allow_tags`, then a warning) and a model
    registry inside the task's pod (an error for a run, else a warning). Returns the
    warnings."""
    from postergenre.pipelines.platform import (
        PLACEHOLDER_IMAGE_PREFIX,
        REGISTRY_URI_HINT,
        is_registry_uri,
        pinned_by_digest,
    )

    spec = load_spec(package)
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    images = sorted({e.get("container", {}).get("image", "") for e in executors.values()})
    placeholders = [image for image in images if image.startswith(PLACEHOLDER_IMAGE_PREFIX)]
    if placeholders:
        raise KfpError(f"{package} runs the placeholder image {placeholders[0]}, which "
                       "nothing publishes: build and push yours (make images) and compile "
                       "with --registry REGISTRY [--tag TAG] or --image and --gpu-image")
    warnings = []
    tagged = [image for image in images if not pinned_by_digest(image)]
    if tagged:
        # KFP's cache key holds the image reference, not what it pointed to when the
        # result was cached: a tag pushed again reuses the old code's results.
        message = (f"{package} runs {', '.join(tagged)} by tag: a cached result of the same "
                   "tag is reused even after the tag is pushed again")
        if not allow_tags:
            raise KfpError(f"{message}; pin each image by digest (--image ...@sha256:... "
                           "--gpu-image ...@sha256:...), or pass --allow-image-tags")
        warnings.append(f"{message} (--no-cache after pushing it again)")
    declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    if "registry" not in declared:
        return warnings
    registry = params.get("registry", declared["registry"].get("defaultValue", ""))
    if is_registry_uri(str(registry)):
        return warnings
    message = (f"the model registry {registry!r}: {REGISTRY_URI_HINT}; pass "
               "-p registry=s3://bucket/prefix or compile with --model-registry "
               "s3://bucket/prefix")
    if run:
        raise KfpError(message)
    return [*warnings, f"{message} (each run must set registry)"]


def connect(host: str | None, auth: Auth, namespace: str | None = None, *,
            ca_cert: str | None = None, check: Callable[[dict], None] | None = None):
    """A `kfp.Client` for `host` (in-cluster DNS name if None), checked with healthz;
    `check` sees the healthz answer first (and may raise)."""
    import kfp
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    host = (host or IN_CLUSTER_HOST).rstrip("/")
    if "://" not in host:
        raise KfpError(f"--host {host!r}: give the scheme, e.g. http://localhost:8080")
    health = check_server(host, auth, ca_cert=ca_cert)
    if check is not None:
        check(health)
    kwargs: dict = {"host": host}
    if auth.token:
        kwargs["existing_token"] = auth.token
    elif auth.token_file:
        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(path=auth.token_file)
    if auth.cookie:
        kwargs["cookies"] = auth.cookie
    if ca_cert:
        kwargs["ssl_ca_cert"] = ca_cert
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


def ui_url(host: str | None, ui: str | None = None) -> str:
    """The KFP UI's base URL: `ui` (--ui-url), else $KF_PIPELINES_UI_ENDPOINT, else
    derived from the API's `host`: the in-cluster API -> the in-cluster UI service, a
    port-forward of the API on 8888 -> docs/kubeflow.md's port-forward of the UI (localhost:8080),
    anything else (Kubeflow's gateway .../pipeline, the UI's own port-forward, which
    proxies the API) -> the host itself."""
    ui = ui or os.environ.get(UI_ENV)
    if ui:
        return ui.rstrip("/")
    host = (host or IN_CLUSTER_HOST).rstrip("/")
    parsed = urllib.parse.urlsplit(host)
    if parsed.hostname and parsed.hostname.startswith("ml-pipeline."):
        return IN_CLUSTER_UI
    if parsed.port == 8888 and parsed.hostname in ("localhost", "127.0.0.1", "::1"):
        return LOCAL_UI
    return host


def run_url(ui: str, run_id: str) -> str:
    return f"{ui.rstrip('/')}/#/runs/details/{run_id}"


@dataclass(frozen=True)
class Submission:
    """What `submit` / `schedule` need beside the client."""

    package: str
    params: Mapping[str, str | int | float | list | bool | dict]
    experiment: str = "postergenre"
    run_name: str | None = None
    namespace: str | None = None
    pipeline_root: str | None = None
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
        service_account=job.service_account)
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
        pipeline_root=job.pipeline_root, service_account=job.service_account,
        max_concurrency=max_concurrency, no_catchup=True)
    return recurring.recurring_run_id


def _pipeline_id(client, name: str, namespace: str | None) -> str | None:
    """kfp.Client.get_pipeline_id, within `namespace` (None: shared pipelines)."""
    predicate = {"operation": "EQUALS", "key": "display_name", "stringValue": name}
    result = _api_call("upload", client.list_pipelines, namespace=namespace,
                       filter=json.dumps({"predicates": [predicate]}))
    found = [p for p in (result.pipelines or []) if p.display_name == name]
    if len(found) > 1:
        raise KfpError(f"upload: {len(found)} pipelines are named {name!r}; name one that "
                       "is unique")
    return found[0].pipeline_id if found else None


def upload(client, package: str, name: str, version: str,
           description: str | None = None, namespace: str | None = None
           ) -> tuple[str, str]:
    """Upload `package` as version `version` of pipeline `name` (the pipeline is created
    on first upload, in `namespace` if given: multi-user KFP's namespaced pipelines);
    return (pipeline id, version id)."""
    load_spec(package)  # a clear error before any upload
    pipeline_id = _pipeline_id(client, name, namespace)
    if pipeline_id is None:
        pipeline = kfp_server_api.V2beta1Pipeline(display_name=name, description=description,
                                                  namespace=namespace)
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
