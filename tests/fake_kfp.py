"""A Kubeflow Pipelines API server on loopback: the v2beta1 REST calls `postergenre
pipeline submit / upload` make, answered the way the real API server answers them
(JSON field names, filters, multipart uploads, 4xx on bad input), and recorded.

Runs report the states a test scripts (`run_states`), one per GET, so `--watch` can
be driven through success, failure and a server that goes away. healthz answers as the
KFP version it plays (`version`): its `tag_name` (`tag_name` to name another, e.g.
'unknown' as release builds before 2.16.0 do), and `pipeline_store` from 2.14.0 on, as
the real server does; `cookie` makes it demand a
session cookie (Dex / oauth2-proxy), `tls=(cert, key)` serve HTTPS.
"""

from __future__ import annotations

import itertools
import json
import ssl
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

API = "/apis/v2beta1"


class FakeKfp:
    """`with FakeKfp(token="t") as kfp:` serves on 127.0.0.1:<free port> (kfp.url)."""

    def __init__(self, token: str | None = None, run_states: list[str] | None = None, *,
                 version: str = "2.17.0", tag_name: str | None = None,
                 cookie: str | None = None, tls: tuple[str, str] | None = None):
        self.token = token
        self.version = version
        self.tag_name = version if tag_name is None else tag_name
        self.cookie = cookie
        self.scheme = "https" if tls else "http"
        self.run_states = list(run_states or ["RUNNING", "SUCCEEDED"])
        self.calls: list[dict] = []  # method, path, query, body (parsed), auth header
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.fail_next_gets = 0  # answer the next N GETs of a run with HTTP 503
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def __enter__(self) -> FakeKfp:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving and close the socket: later calls get 'connection refused'."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def calls_to(self, method: str, path: str) -> list[dict]:
        return [c for c in self.calls if c["method"] == method and c["path"] == path]

    def _id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"

    # -- the API -------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict, body, auth: str | None,
               cookie: str | None = None):
        if self.token is not None and auth != f"Bearer {self.token}":
            return 401, {"code": 16, "message": "Unauthenticated: bad or missing token"}
        if self.cookie is not None and self.cookie not in (cookie or "").split("; "):
            return 401, {"code": 16, "message": "Unauthenticated: no session cookie"}
        if (method, path) == ("GET", f"{API}/healthz"):
            health = {"commit_sha": "0123abc", "tag_name": self.tag_name, "multi_user": False}
            if tuple(map(int, self.version.split("."))) >= (2, 14, 0):
                health["pipeline_store"] = "database"
            return 200, health
        if (method, path) == ("GET", f"{API}/experiments"):
            found = _filtered(self.experiments.values(), query)
            return 200, ({"experiments": found, "total_size": len(found)} if found else {})
        if (method, path) == ("POST", f"{API}/experiments"):
            if not body.get("display_name"):
                return 400, {"code": 3, "message": "Invalid input error: experiment name is "
                             "empty"}
            experiment = {**body, "experiment_id": self._id("exp"), "storage_state": "AVAILABLE"}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if (method, path) == ("POST", f"{API}/runs"):
            error = _check_run(body, self.experiments)
            if error:
                return 400, {"code": 3, "message": error}
            run = {**body, "run_id": self._id("run"), "state": "PENDING"}
            run["states"] = list(self.run_states)
            self.runs[run["run_id"]] = run
            return 200, _public(run)
        if method == "GET" and path.startswith(f"{API}/runs/"):
            run = self.runs.get(path.rsplit("/", 1)[1])
            if run is None:
                return 404, {"code": 5, "message": "Run not found"}
            if self.fail_next_gets:
                self.fail_next_gets -= 1
                return 503, {"code": 14, "message": "upstream connect error"}
            if run["states"]:
                run["state"] = run["states"].pop(0)
            if run["state"] == "FAILED":
                run["error"] = {"code": 2, "message": "task train failed: OOMKilled"}
            return 200, _public(run)
        if (method, path) == ("POST", f"{API}/recurringruns"):
            error = _check_run(body, self.experiments)
            cron = body.get("trigger", {}).get("cron_schedule", {}).get("cron", "")
            if not error and len(cron.split()) != 6:
                error = f"Invalid input error: cron {cron!r} is not a 6-field expression"
            if error:
                return 400, {"code": 3, "message": error}
            recurring = {**body, "recurring_run_id": self._id("recurring"), "status": "ENABLED"}
            self.recurring_runs[recurring["recurring_run_id"]] = recurring
            return 200, recurring
        if (method, path) == ("GET", f"{API}/pipelines"):
            # Namespaced pipelines (multi-user): a namespace lists its own, none the shared.
            namespace = query.get("namespace", [None])[0]
            found = [p for p in _filtered(self.pipelines.values(), query)
                     if p.get("namespace") == namespace]
            return 200, ({"pipelines": found, "total_size": len(found)} if found else {})
        if (method, path) == ("POST", f"{API}/pipelines"):
            if any(p["display_name"] == body.get("display_name")
                   and p.get("namespace") == body.get("namespace")
                   for p in self.pipelines.values()):
                return 409, {"code": 6, "message": "Already exist error: pipeline name"}
            pipeline = {**body, "pipeline_id": self._id("pipeline")}
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            return 200, pipeline
        if (method, path) == ("POST", f"{API}/pipelines/upload_version"):
            pipeline_id = query.get("pipelineid", [""])[0]
            if pipeline_id not in self.pipelines:
                return 404, {"code": 5, "message": f"Pipeline {pipeline_id} not found"}
            name = query.get("name", [""])[0]
            if any(v["pipeline_id"] == pipeline_id and v["display_name"] == name
                   for v in self.versions.values()):
                return 409, {"code": 6, "message": f"Already exist error: version {name}"}
            if "root" not in body.get("uploadfile", {}).get("pipeline_spec", {}):
                return 400, {"code": 3, "message": "uploadfile is not a pipeline spec"}
            version = {"pipeline_id": pipeline_id, "pipeline_version_id": self._id("version"),
                       "display_name": name, "description": query.get("description", [""])[0]}
            self.versions[version["pipeline_version_id"]] = version
            return 200, version
        return 404, {"code": 5, "message": f"no route {method} {path}"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest's output clean
                pass

            def _serve(self, method: str) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = _parse_body(self.headers.get("Content-Type", ""), raw)
                auth = self.headers.get("Authorization")
                cookie = self.headers.get("Cookie")
                fake.calls.append({"method": method, "path": url.path, "query": query,
                                   "body": body, "auth": auth, "cookie": cookie})
                status, payload = fake.handle(method, url.path, query, body, auth, cookie)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

        return Handler


def _parse_body(content_type: str, raw: bytes):
    if not raw:
        return {}
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
        parts = {}
        for part in message.iter_parts():
            import yaml

            docs = list(yaml.safe_load_all(part.get_content()))
            parts[part.get_param("name", header="content-disposition")] = {
                "filename": part.get_filename(), "pipeline_spec": docs[0] if docs else {},
                "documents": len(docs)}
        return parts
    return json.loads(raw)


def _filtered(items, query: dict) -> list[dict]:
    """The v2beta1 list filter: JSON predicates, EQUALS on display_name."""
    items = list(items)
    if "filter" in query:
        for predicate in json.loads(query["filter"][0]).get("predicates", []):
            assert predicate["operation"] in ("EQUALS", 1), predicate
            items = [i for i in items if i.get(predicate["key"]) == predicate["stringValue"]]
    return items


def _check_run(body: dict, experiments: dict) -> str | None:
    """What the API server refuses: no experiment, no spec, unknown parameters."""
    if body.get("experiment_id") not in experiments:
        return f"Experiment {body.get('experiment_id')} not found"
    spec = body.get("pipeline_spec") or {}
    spec = spec.get("pipeline_spec", spec)  # with a platform spec: {pipeline_spec, platform_spec}
    if "root" not in spec:
        return "Invalid input error: no pipeline spec"
    declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    given = body.get("runtime_config", {}).get("parameters", {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        return f"Invalid input error: parameters {unknown} are not in the pipeline"
    return None


def _public(run: dict) -> dict:
    return {k: v for k, v in run.items() if k != "states"}
