"""`postergenre pipeline submit / upload / --schedule / --watch` against a KFP API server
on loopback (tests/fake_kfp.py), with the real kfp.Client doing the calls."""

from __future__ import annotations

import re
import shutil
import subprocess

import kfp
import pytest

from postergenre.cli import main
from postergenre.pipelines import submit
from postergenre.pipelines.platform import ClusterSettings
from postergenre.pipelines.runner import compile_pipeline, parse_spec_params
from tests.fake_kfp import API, FakeKfp

TOKEN = "sentinel-kfp-token-7d1c"
IMAGES = {"image": "registry.example/postergenre@sha256:" + "a" * 64,
          "gpu_image": "registry.example/gpu@sha256:" + "b" * 64}
REGISTRY = "s3://bucket/postergenre/registry"
IMAGE_FLAGS = ["--image", IMAGES["image"], "--gpu-image", IMAGES["gpu_image"]]


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> str:
    """A package as `pipeline compile` writes it for a cluster: real images, the model
    registry in S3, default (oldest-backend) features."""
    return str(compile_pipeline(tmp_path_factory.mktemp("pkg") / "pipeline.yaml",
                                ClusterSettings(**IMAGES, model_registry=REGISTRY)))


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    # kfp.Client reads (and may write) a per-user context file: keep it out of $HOME.
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    monkeypatch.delenv("KF_PIPELINES_SA_TOKEN_PATH", raising=False)


def _submit(server: FakeKfp, package: str, *extra: str) -> int:
    return main(["pipeline", "submit", "--host", server.url, "--package", package,
                 "--poll", "0.01", *extra])


def test_submit_creates_a_run_with_typed_parameters_and_the_token(package, capsys):
    with FakeKfp(token=TOKEN) as server:
        assert _submit(server, package, "-p", "source=local", "-p", "data_version=abc123",
                       "-p", 'gate={"epsilon": 0.1}', "--run-name", "nightly") == 0
        assert _submit(server, package) == 0
    out = capsys.readouterr().out
    (run, second) = server.calls_to("POST", f"{API}/runs")
    assert run["body"]["display_name"] == "nightly"
    assert run["body"]["runtime_config"]["parameters"] == {
        "source": "local", "data_version": "abc123", "gate": {"epsilon": 0.1}}
    spec = run["body"]["pipeline_spec"]
    assert spec["pipeline_spec"]["pipelineInfo"]["name"] == "postergenre"
    assert "kubernetes" in spec["platform_spec"]["platforms"]
    # One experiment, created on the first submit and found by name on the second.
    assert len(server.calls_to("POST", f"{API}/experiments")) == 1
    assert run["body"]["experiment_id"] == second["body"]["experiment_id"]
    assert all(call["auth"] == f"Bearer {TOKEN}" for call in server.calls)
    run_id = next(iter(server.runs))
    assert f"{server.url}/#/runs/details/{run_id}" in out
    assert TOKEN not in out


def _cached_tasks(spec: dict) -> set[str]:
    """The tasks of every DAG (the root's, the training ParallelFor's, the gate's dsl.If)
    that may reuse a cached result."""
    dags = [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]
    return {name for dag in dags for name, task in dag.get("tasks", {}).items()
            if "dag" not in spec["components"][task["componentRef"]["name"]]
            and task.get("cachingOptions", {}).get("enableCache")}


def test_no_cache_overrides_the_compiled_caching_in_every_dag(package, capsys):
    """kfp.Client's enable_caching=False reaches the root DAG's tasks only; the trainings
    sit in the ParallelFor's DAG and batch-predict in the dsl.If's, so --no-cache rewrites
    the package itself: no task of any DAG reuses a cached result, for a run, a
    recurring run and an uploaded version alike."""
    with FakeKfp(token=TOKEN) as server:
        assert _submit(server, package) == 0
        assert _submit(server, package, "--no-cache") == 0
        assert _submit(server, package, "--no-cache", "--schedule", "0 3 * * 1") == 0
        assert main(["pipeline", "upload", "--host", server.url, "--package", package,
                     "--version", "v1", "--no-cache"]) == 0
    compiled, forced = (c["body"]["pipeline_spec"]["pipeline_spec"]
                        for c in server.calls_to("POST", f"{API}/runs"))
    assert compiled["root"]["dag"]["tasks"]["ingest"]["cachingOptions"] == {}  # never cached
    assert _cached_tasks(compiled) == {"validate", "split", "augment", "train", "roc",
                                       "gate", "batch-predict"}
    assert _cached_tasks(forced) == set()
    (recurring,) = server.calls_to("POST", f"{API}/recurringruns")
    assert _cached_tasks(recurring["body"]["pipeline_spec"]["pipeline_spec"]) == set()
    (uploaded,) = server.calls_to("POST", f"{API}/pipelines/upload_version")
    assert _cached_tasks(uploaded["body"]["uploadfile"]["pipeline_spec"]) == set()


def test_submit_compiles_with_the_given_images_when_no_package(capsys):
    with FakeKfp(token=TOKEN) as server:
        assert main(["pipeline", "submit", "--host", server.url, "--registry",
                     "registry.example/team", "--tag", "sha256:" + "a" * 64,
                     "--model-registry", REGISTRY]) == 0
    (run,) = server.calls_to("POST", f"{API}/runs")
    executors = run["body"]["pipeline_spec"]["pipeline_spec"]["deploymentSpec"]["executors"]
    images = {name: e["container"]["image"] for name, e in executors.items()}
    assert images["exec-train"] == "registry.example/team/postergenre-gpu@sha256:" + "a" * 64
    assert images["exec-gate"] == "registry.example/team/postergenre@sha256:" + "a" * 64


@pytest.mark.parametrize(("states", "code", "last"), [
    (["PENDING", "RUNNING", "RUNNING", "SUCCEEDED"], 0, "SUCCEEDED"),
    (["RUNNING", "FAILED"], 1, "FAILED"),
    (["RUNNING", "CANCELED"], 1, "CANCELED"),
])
def test_watch_follows_the_run_to_its_end(package, capsys, states, code, last):
    with FakeKfp(token=TOKEN, run_states=states) as server:
        assert _submit(server, package, "--watch") == code
    out = capsys.readouterr().out
    states_seen = re.findall(r"^run run-\d+: ([A-Z]+)$", out, flags=re.MULTILINE)
    assert states_seen[-1] == last
    assert states_seen[0] == states[0]
    if last == "FAILED":
        assert "OOMKilled" in out  # the run's own error message is shown


def test_watch_rides_out_a_short_outage(package, capsys):
    with FakeKfp(token=TOKEN, run_states=["RUNNING", "SUCCEEDED"]) as server:
        server.fail_next_gets = 3
        assert _submit(server, package, "--watch") == 0
    assert len(server.calls_to("GET", f"{API}/runs/run-2")) == 5


def test_watch_gives_up_on_a_lost_server_with_exit_3(package, capsys):
    with FakeKfp(token=TOKEN, run_states=["RUNNING"] * 1000) as server:
        client = submit.connect(server.url, submit.Auth(token=TOKEN))
        run_id = submit.submit(client, submit.Submission(package=package, params={}))
        assert client.get_run(run_id).state == "RUNNING"  # reachable while the server lives
        server.stop()
        with pytest.raises(submit.ConnectionLostError, match="goes on on the cluster"):
            submit.watch_run(client, run_id, poll_s=0.01, max_misses=2)
    # The same through the CLI: the server dies while --watch polls.
    with FakeKfp(token=TOKEN, run_states=["RUNNING"] * 1000) as server:
        server.fail_next_gets = 10**6  # answers 503 forever, like a dead ingress
        assert _submit(server, package, "--watch") == 3
    assert "lost the KFP API" in capsys.readouterr().err


def test_schedule_creates_a_recurring_run(package, capsys):
    with FakeKfp(token=TOKEN) as server:
        assert _submit(server, package, "--schedule", "0 3 * * 1", "-p", "source=demo") == 0
        assert _submit(server, package, "--schedule", "every monday") == 2
    (call,) = server.calls_to("POST", f"{API}/recurringruns")
    body = call["body"]
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert body["mode"] == "ENABLE" and body["no_catchup"] is True
    assert body["runtime_config"]["parameters"] == {"source": "demo"}
    assert not server.calls_to("POST", f"{API}/runs")
    captured = capsys.readouterr()
    assert "recurring run recurring-" in captured.out
    assert "5 fields" in captured.err


def test_upload_creates_the_pipeline_then_adds_versions(package, capsys):
    with FakeKfp(token=TOKEN) as server:
        args = ["pipeline", "upload", "--host", server.url, "--package", package]
        assert main([*args, "--version", "v1"]) == 0
        assert main([*args, "--version", "v2", "--description", "new gate"]) == 0
        assert main([*args, "--version", "v2"]) == 2  # a version name is used once
    assert len(server.pipelines) == 1
    (pipeline,) = server.pipelines.values()
    assert pipeline["display_name"] == "postergenre"
    assert "namespace" not in pipeline  # shared, as no --namespace was given
    versions = sorted(v["display_name"] for v in server.versions.values())
    assert versions == ["v1", "v2"]
    uploads = server.calls_to("POST", f"{API}/pipelines/upload_version")
    assert uploads[0]["body"]["uploadfile"]["documents"] == 2  # spec + platform spec
    captured = capsys.readouterr()
    assert "version 'v2'" in captured.out
    assert "HTTP 409" in captured.err and "version v2" in captured.err


def test_clear_errors_for_host_auth_and_parameters(package, capsys, monkeypatch, tmp_path):
    server = FakeKfp(token=TOKEN)
    with server:
        monkeypatch.setenv("KFP_TOKEN", "wrong-token")
        assert _submit(server, package) == 2
        assert "rejected the credentials (HTTP 401" in capsys.readouterr().err
        monkeypatch.setenv("KFP_TOKEN", TOKEN)
        assert _submit(server, package, "-p", "epochs=3") == 2
        assert "unknown pipeline parameter 'epochs'" in capsys.readouterr().err
        assert _submit(server, package, "-p", "gate=strict") == 2
        assert "not a valid dict" in capsys.readouterr().err
        assert not server.calls_to("POST", f"{API}/runs")
        # What only the server can refuse is passed on in one line.
        client = submit.connect(server.url, submit.Auth(token=TOKEN))
        with pytest.raises(submit.KfpError, match="HTTP 400: Invalid input error: parameters"):
            submit.submit(client, submit.Submission(package=package, params={"bogus": 1}))
    assert _submit(server, package) == 2  # stopped: nothing listens on that port
    assert "cannot reach the Kubeflow Pipelines API" in capsys.readouterr().err
    assert main(["pipeline", "submit", "--host", "localhost:1", "--package", package]) == 2
    assert "give the scheme" in capsys.readouterr().err
    assert main(["pipeline", "submit", "--host", "http://127.0.0.1:1",
                 "--package", str(tmp_path / "missing.yaml")]) == 2
    assert "no compiled pipeline there" in capsys.readouterr().err


def test_service_account_token_is_read_on_every_call(package, tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text("sa-token-1\n")
    monkeypatch.delenv("KFP_TOKEN")
    with FakeKfp() as server:
        client = submit.connect(server.url, submit.Auth.resolve("service-account",
                                                                token_file=str(token_file)))
        submit.submit(client, submit.Submission(package=package, params={}))
        token_file.write_text("sa-token-2\n")  # the kubelet rotated the projected token
        client.get_run("run-2")
    assert server.calls[0]["auth"] == "Bearer sa-token-1"
    assert server.calls[-1]["auth"] == "Bearer sa-token-2"
    with pytest.raises(submit.KfpError, match="no token file"):
        submit.Auth.resolve("service-account", token_file=str(tmp_path / "none"))
    with pytest.raises(submit.KfpError, match="KFP_TOKEN is empty"):
        submit.Auth.resolve("token")


def test_parameters_are_typed_by_the_compiled_spec():
    spec = {"root": {"inputDefinitions": {"parameters": {
        "n": {"parameterType": "NUMBER_INTEGER"}, "x": {"parameterType": "NUMBER_DOUBLE"},
        "genres": {"parameterType": "LIST"}, "flag": {"parameterType": "BOOLEAN"},
        "extra": {"parameterType": "STRUCT"}, "name": {"parameterType": "STRING"}}}}}
    assert parse_spec_params(["n=3", "x=0.5", "genres=War,Sci-Fi", "flag=false",
                              'extra={"a": 1}', "name=a=b"], spec) == {
        "n": 3, "x": 0.5, "genres": ["War", "Sci-Fi"], "flag": False, "extra": {"a": 1},
        "name": "a=b"}
    for bad, message in (("flag=maybe", "not a valid bool"), ("extra=[1]", "not a valid dict"),
                         ("x=abc", "not a valid float"), ("n", "expected KEY=VALUE")):
        with pytest.raises(ValueError, match=message):
            parse_spec_params([bad], spec)


def test_submit_and_upload_refuse_what_the_servers_kfp_lacks(tmp_path, capsys):
    """The healthz tag_name against the package's fields: KFP 2.15.0 refuses a run whose
    tasks carry a securityContext (2.16.0), so submit says so first, in one line."""
    newer = str(compile_pipeline(tmp_path / "p.yaml", ClusterSettings(
        **IMAGES, model_registry=REGISTRY, security_context=True)))
    with FakeKfp(token=TOKEN, version="2.15.0") as server:
        assert _submit(server, newer) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert (f"{server.url} runs Kubeflow Pipelines 2.15.0, this pipeline needs 2.16.0 or "
                "newer (it uses KubernetesExecutorConfig.securityContext (since 2.16.0)): "
                "compile it without --security-context, or upgrade the backend") in err
        assert main(["pipeline", "upload", "--host", server.url, "--package", newer]) == 2
        assert "needs 2.16.0 or newer" in capsys.readouterr().err
        assert not server.calls_to("POST", f"{API}/runs") and not server.pipelines
    with FakeKfp(token=TOKEN, version="2.16.0") as server:
        assert _submit(server, newer) == 0
    # Kubeflow 1.10 ships KFP 2.5.0: no backend support for dsl.Collected.
    with FakeKfp(token=TOKEN, version="2.5.0") as server:
        assert main(["pipeline", "submit", "--host", server.url, "--package", newer]) == 2
    assert "dsl.Collected" in capsys.readouterr().err


def test_a_server_that_names_no_version_is_placed_by_its_healthz(package, tmp_path, capsys):
    """Release builds before 2.16.0 answer healthz with tag_name 'unknown': Kubeflow 1.10
    (KFP 2.5.0) and 1.11 (2.15.0) alike. healthz's pipeline_store (2.14.0 on) tells them
    apart: the older is refused, the newer runs the default pipeline, and a pipeline
    that needs more than 2.14.0 goes ahead with a warning that says so."""
    newer = str(compile_pipeline(tmp_path / "p.yaml", ClusterSettings(
        **IMAGES, model_registry=REGISTRY, security_context=True)))
    with FakeKfp(token=TOKEN, version="2.5.0", tag_name="unknown") as server:
        assert _submit(server, package) == 2
        assert not server.calls_to("POST", f"{API}/runs")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert ("names no KFP version (healthz tag_name 'unknown') and answers as KFP 2.5.0 or older "
            "(no pipeline_store in healthz, which 2.14.0 added), this pipeline needs 2.14.0 "
            "or newer (it uses dsl.Collected") in err
    with FakeKfp(token=TOKEN, version="2.15.0", tag_name="unknown") as server:
        assert _submit(server, package) == 0
        assert "names no KFP version" not in capsys.readouterr().err
        assert _submit(server, newer) == 0
    assert ("it answers as KFP 2.14.0 or newer, and this pipeline needs 2.16.0 or newer, "
            "which was not checked") in capsys.readouterr().err


def test_submit_needs_published_images_and_a_registry_outside_the_pod(tmp_path, capsys):
    placeholder = str(compile_pipeline(tmp_path / "placeholder.yaml",
                                       ClusterSettings(model_registry=REGISTRY)))
    local_registry = str(compile_pipeline(tmp_path / "local.yaml", ClusterSettings(**IMAGES)))
    with FakeKfp(token=TOKEN) as server:
        # No --image / --registry: the placeholder images, which nothing publishes.
        assert main(["pipeline", "submit", "--host", server.url, "--model-registry",
                     REGISTRY]) == 2
        assert "placeholder image ghcr.io/postergenre/" in capsys.readouterr().err
        assert _submit(server, placeholder) == 2
        assert "--registry REGISTRY" in capsys.readouterr().err
        assert main(["pipeline", "upload", "--host", server.url, "--package",
                     placeholder]) == 2
        capsys.readouterr()
        # The registry parameter's default is a folder in the pod: given at submit, fine.
        assert _submit(server, local_registry) == 2
        assert "-p registry=s3://bucket/prefix" in capsys.readouterr().err
        # gs:// is no registry for the images (s3fs only, no gcsfs): refused before the run.
        assert _submit(server, local_registry, "-p", "registry=gs://bucket/registry") == 2
        assert "GCS through its XML API with HMAC keys" in capsys.readouterr().err
        assert _submit(server, local_registry, "-p", f"registry={REGISTRY}") == 0
        # upload only warns: each run in the UI can set registry.
        assert main(["pipeline", "upload", "--host", server.url, "--package", local_registry,
                     "--version", "v1"]) == 0
        assert "warning: the model registry 'registry'" in capsys.readouterr().err
    (run,) = server.calls_to("POST", f"{API}/runs")
    assert run["body"]["runtime_config"]["parameters"] == {"registry": REGISTRY}
    # compile keeps the placeholders, with a warning.
    out = tmp_path / "compiled.yaml"
    assert main(["pipeline", "compile", "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert "warning: --image and --gpu-image: the placeholder images" in captured.err
    assert "Needs Kubeflow Pipelines backend 2.14.0 or newer" in captured.out


def test_printed_links_go_to_the_ui(package, capsys, monkeypatch):
    monkeypatch.delenv(submit.UI_ENV, raising=False)
    with FakeKfp(token=TOKEN) as server:
        assert _submit(server, package, "--ui-url", "https://kubeflow.example.com/pipeline/") == 0
        run_id = server.calls_to("POST", f"{API}/runs")[0]
    out = capsys.readouterr().out
    assert re.search(r"run (run-\d+): https://kubeflow\.example\.com/pipeline/#/runs/details/"
                     r"\1$", out, flags=re.MULTILINE), out
    assert run_id
    # Derived: the API's port-forward (8888) -> docs/kubeflow.md's port-forward of the UI (8080).
    assert submit.ui_url("http://localhost:8888") == "http://localhost:8080"
    assert submit.ui_url(None) == "http://ml-pipeline-ui.kubeflow.svc.cluster.local"
    assert submit.ui_url("https://kf.example.com/pipeline") == "https://kf.example.com/pipeline"
    monkeypatch.setenv(submit.UI_ENV, "http://ui.example:8080/")
    assert submit.ui_url("http://localhost:8888") == "http://ui.example:8080"


def test_upload_into_a_namespace(package, capsys):
    with FakeKfp(token=TOKEN) as server:
        args = ["pipeline", "upload", "--host", server.url, "--package", package,
                "--namespace", "team-a"]
        assert main([*args, "--version", "v1"]) == 0
        assert main([*args, "--version", "v2"]) == 0
    (pipeline,) = server.pipelines.values()
    assert pipeline["namespace"] == "team-a"
    lookups = server.calls_to("GET", f"{API}/pipelines")
    assert lookups and all(c["query"]["namespace"] == ["team-a"] for c in lookups)
    assert len(server.versions) == 2


def test_session_cookie_from_the_environment(package, monkeypatch, capsys):
    cookie = "authservice_session=sentinel-cookie-42"
    monkeypatch.delenv("KFP_TOKEN")
    monkeypatch.setenv("KF_SESSION", cookie)
    with FakeKfp(cookie=cookie) as server:
        assert _submit(server, package) == 2  # no cookie: rejected
        assert "rejected the credentials (HTTP 401" in capsys.readouterr().err
        assert _submit(server, package, "--cookie-env", "KF_SESSION") == 0
        assert _submit(server, package, "--cookie-env", "NO_SUCH_VARIABLE") == 2
    assert "NO_SUCH_VARIABLE: the environment variable is empty" in capsys.readouterr().err
    assert server.calls_to("POST", f"{API}/runs")[0]["cookie"] == cookie
    assert cookie not in capsys.readouterr().out


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (its own CA), made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a test certificate")
    work = tmp_path_factory.mktemp("tls")
    cert, key = str(work / "cert.pem"), str(work / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                   capture_output=True)
    return cert, key


def test_private_ca(package, tls_cert, capsys):
    cert, _ = tls_cert
    with FakeKfp(token=TOKEN, tls=tls_cert) as server:
        assert server.url.startswith("https://")
        assert _submit(server, package) == 2
        assert "(a private CA? --ca-cert FILE)" in capsys.readouterr().err
        assert _submit(server, package, "--ca-cert", cert, "--watch") == 0
        assert _submit(server, package, "--ca-cert", cert + ".missing") == 2
    assert "no such file" in capsys.readouterr().err
    assert len(server.calls_to("POST", f"{API}/runs")) == 1


def test_images_given_by_tag_need_to_be_allowed(tmp_path, capsys):
    """KFP's cache key holds the image reference: a tag pushed again would reuse the old
    code's cached results, so submit and upload refuse tags unless --allow-image-tags
    (the compiled tasks then pull them on every run: test_compile_golden)."""
    tagged = str(compile_pipeline(tmp_path / "tags.yaml", ClusterSettings(
        image="registry.example/postergenre:0.1.0", gpu_image=IMAGES["gpu_image"],
        model_registry=REGISTRY)))
    with FakeKfp(token=TOKEN) as server:
        assert _submit(server, tagged) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert ("runs registry.example/postergenre:0.1.0 by tag: a cached result of the same "
                "tag is reused even after the tag is pushed again; pin each image by digest"
                in err)
        assert main(["pipeline", "upload", "--host", server.url, "--package", tagged]) == 2
        assert main(["pipeline", "submit", "--host", server.url, "--registry",
                     "registry.example/team", "--tag", "0.1.0",
                     "--model-registry", REGISTRY]) == 2
        assert "--allow-image-tags" in capsys.readouterr().err
        assert not server.calls_to("POST", f"{API}/runs")
        assert _submit(server, tagged, "--allow-image-tags") == 0
        assert "(--no-cache after pushing it again)" in capsys.readouterr().err
        assert len(server.calls_to("POST", f"{API}/runs")) == 1


def test_a_backend_before_2_16_is_said_to_leave_tasks_unhardened(package, capsys):
    """allowPrivilegeEscalation, capabilities and seccomp cannot be asked for in a pipeline
    spec; KFP sets them on every task from 2.16.0 on. On an older backend, submit says
    which protections the tasks may run without."""
    with FakeKfp(token=TOKEN, version="2.15.0") as server:
        assert _submit(server, package) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert ("(KFP 2.15.0) may run the tasks without allowPrivilegeEscalation: false, "
            "capabilities.drop: [ALL], seccompProfile: RuntimeDefault: KFP sets them on every "
            "task from 2.16.0 on") in err
    with FakeKfp(token=TOKEN, version="2.16.0") as server:
        assert _submit(server, package) == 0
    assert capsys.readouterr().err == ""
