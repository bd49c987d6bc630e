"""The deployment files: dashboard, alerts, compose file, image, Kubernetes.

No Docker engine or cluster is needed: the files are parsed and checked
against what the scorer really exports and accepts, promtool checks the
Prometheus files, and the Kubernetes manifests are validated against the
Kubernetes API schemas (kubernetes-validate).
"""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from scorer.clients import consumer_settings, transactional_id
from scorer.config import load_config, parse_config
from scorer.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "lead-scorer-dashboard.json"
PROMETHEUS = DEPLOY / "prometheus"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = ROOT / "docker-compose.yml"
KUBERNETES_VERSION = "1.33.0"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
)
_RANGE = re.compile(r"\[[^\]]*\]")
_NAME = re.compile(r"(?<![\w:$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "inf", "nan"}


def exported_names() -> set[str]:
    """Every sample name `scorer run` puts on /metrics."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = _STRING.sub('""', promql)
    text = _MATCHERS.sub("", text)
    text = _GROUPING.sub("", text)
    text = _RANGE.sub("", text)
    return {name for name in _NAME.findall(text) if name.lower() not in _KEYWORDS}


def test_the_name_parser_finds_metrics_not_functions_or_labels() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=~"$job"}'
        "[$__rate_interval]))) / on(job) b_total and time() - c > 5"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


def dashboard_targets() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_dashboard_has_a_prometheus_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}

    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert {p["datasource"]["uid"] for p in panels} == {"${datasource}"}
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_dashboard_covers_what_operators_watch() -> None:
    exprs = " ".join(expr for _, expr in dashboard_targets())

    assert "histogram_quantile(0.99" in exprs
    for metric in (
        "scorer_events_consumed_total",
        "scorer_event_to_output_seconds_bucket",
        "scorer_consumer_lag_records",
        "scorer_dead_lettered_total",
        "scorer_mql_crossings_total",
        "scorer_kafka_errors_total",
        "scorer_redis_errors_total",
        "scorer_kafka_silence_seconds",
    ):
        assert metric in exprs


def test_every_dashboard_query_uses_exported_metrics_only() -> None:
    exported = exported_names()

    for title, expr in dashboard_targets():
        used = metric_names(expr)
        assert used, f"{title}: no metric in {expr}"
        assert used <= exported, f"{title}: not exported: {used - exported}"


def test_every_alert_uses_exported_metrics_only() -> None:
    exported = exported_names() | {"up"}

    for rule in alert_rules():
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= exported, f"{rule['alert']}: not exported: {used - exported}"


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not on PATH: scripts/system-deps.sh installs it")
    return path


def run_promtool(*args: str, cwd: Path = PROMETHEUS) -> str:
    result = subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    # promtool parses recording rules, so each query becomes one, with
    # Grafana's variables replaced as Grafana would.
    rules = []
    for index, (_, expr) in enumerate(dashboard_targets()):
        rules.append({"record": f"dashboard:query_{index}", "expr": concrete(expr)})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": rules}]}))

    output = run_promtool("check", "rules", str(path))

    assert f"SUCCESS: {len(rules)} rules found" in output


def concrete(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced as Grafana would."""
    expr = expr.replace("$__rate_interval", "1m")
    return expr.replace("$job", ".*").replace("$instance", ".*")


def test_since_last_batch_shows_nothing_before_the_first_batch(
    tmp_path: Path,
) -> None:
    """The timestamp is 0 until a batch is committed: it showed ~56 years."""
    [panel] = [
        p
        for p in json.loads(DASHBOARD.read_text())["panels"]
        if p["title"] == "Since last batch"
    ]
    expr = concrete(panel["targets"][0]["expr"])
    series = 'scorer_last_batch_timestamp_seconds{job="lead-scorer", instance="%s"}'
    fresh = {"series": series % "a:9108", "values": "0x10"}
    working = {"series": series % "b:9108", "values": "0 0 120x8"}
    cases = [
        ([fresh], []),
        ([fresh, working], [{"labels": "{}", "value": 180}]),
    ]
    tests = [
        {
            "interval": "1m",
            "input_series": inputs,
            "promql_expr_test": [
                {"expr": expr, "eval_time": "5m", "exp_samples": expected}
            ],
        }
        for inputs, expected in cases
    ]
    path = tmp_path / "panel_test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [], "tests": tests}))

    assert "SUCCESS" in run_promtool("test", "rules", str(path))
    assert panel["fieldConfig"]["defaults"]["noValue"] == "no batch yet"


def test_alert_rules_are_valid_and_pass_their_unit_tests() -> None:
    count = len(alert_rules())
    assert f"SUCCESS: {count} rules found" in run_promtool(
        "check", "rules", "alerts.yml"
    )
    assert "SUCCESS" in run_promtool("test", "rules", "alerts_test.yml")


def test_every_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    tested = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }

    assert tested == {rule["alert"] for rule in alert_rules()}


def test_prometheus_config_is_valid() -> None:
    output = run_promtool("check", "config", "prometheus.yml")

    assert "is valid prometheus config file syntax" in output


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_compose_runs_the_whole_stack() -> None:
    services = compose()["services"]

    assert set(services) == {
        "kafka",
        "kafka-topics",
        "redis",
        "scorer",
        "producer",
        "prometheus",
        "grafana",
    }
    for name, service in services.items():
        image = service.get("image", "")
        assert image or "build" in service, name
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on {dependency}"


def test_compose_mounts_only_files_that_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} is missing"
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").is_file()


def test_compose_scorer_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose()["services"]
    scorer = services["scorer"]
    mounts = dict(v.split(":")[1::-1] for v in scorer["volumes"])
    config_path = scorer["command"][scorer["command"].index("--config") + 1]

    config = load_config(ROOT / mounts[config_path], environ=scorer["environment"])

    assert config.kafka.bootstrap_servers == "kafka:9092"
    assert config.logging.format == "json"
    topics = {t.name for t in config.topics.events}
    created = services["kafka-topics"]["command"][0]
    for topic in [*topics, config.topics.output.name, config.topics.dead_letter]:
        assert topic in created
    producer = " ".join(services["producer"]["command"])
    assert all(f"={topic}" in producer for topic in topics)


def test_grafana_finds_the_dashboard_and_prometheus() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    dashboard_in_container = mounts["./deploy/grafana/lead-scorer-dashboard.json"]
    provisioning = DEPLOY / "grafana" / "provisioning"
    providers = yaml.safe_load(
        (provisioning / "dashboards" / "lead-scorer.yml").read_text()
    )
    sources = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yml").read_text()
    )

    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    folder = providers["providers"][0]["options"]["path"]
    assert str(Path(dashboard_in_container).parent) == folder
    assert sources["datasources"][0]["type"] == "prometheus"
    assert sources["datasources"][0]["url"] == "http://prometheus:9090"


def test_compose_file_passes_docker_compose_config() -> None:
    docker = shutil.which("docker")
    plugin = (
        docker is not None
        and subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    )
    if not plugin or docker is None:
        pytest.skip("no `docker compose` plugin here; the structural checks ran")

    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_image_runs_the_scorer_as_a_non_root_user() -> None:
    instructions = dockerfile()
    last = {kind: arg for kind, arg in instructions}

    assert [arg for kind, arg in instructions if kind == "FROM"] == [
        "python:3.11-slim AS build",
        "python:3.11-slim",
    ]
    assert last["USER"] not in ("root", "0")
    assert json.loads(last["ENTRYPOINT"]) == ["scorer"]
    assert json.loads(last["CMD"]) == ["run"]
    assert "/healthz" in last["HEALTHCHECK"]
    assert last["EXPOSE"] == "9108"
    installs = [arg for kind, arg in instructions if kind == "RUN" and "pip " in arg]
    assert all("--no-cache-dir" in arg for arg in installs)


def test_the_build_copies_what_the_package_links_to() -> None:
    copied = {
        source.rstrip("/")
        for kind, arg in dockerfile()
        if kind == "COPY" and not arg.startswith("--from")
        for source in arg.split()[:-1]
    }
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    links = [p for p in (ROOT / "scorer").rglob("*") if p.is_symlink()]

    assert copied == allowed == {"pyproject.toml", "README.md", "schemas", "scorer"}
    for link in links:
        target = link.resolve().relative_to(ROOT).parts[0]
        assert target in copied, f"{link} points outside what the image copies"


def manifests() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    return [
        (name, document)
        for name in kustomization["resources"]
        for document in yaml.safe_load_all((KUBERNETES / name).read_text())
    ]


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}

    assert set(listed["resources"]) == files


def test_manifests_match_the_kubernetes_schemas() -> None:
    for name, document in manifests():
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {exc.path}: {exc.message}")


def by_kind() -> dict[str, dict[str, Any]]:
    return {document["kind"]: document for _, document in manifests()}


def test_deployment_probes_use_the_scorer_endpoints() -> None:
    deployment = by_kind()["StatefulSet"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    assert deployment["spec"]["replicas"] > 1
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert ports == {"http": 9108}  # the image's port: see the test below
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert by_kind()["Service"]["spec"]["ports"][0]["targetPort"] == "http"


def test_each_pod_is_a_static_member_named_after_itself(tmp_path: Path) -> None:
    # Its partitions come back at once after a crash, and with transactions
    # on, its transactional id is the same across restarts.
    pod = by_kind()["StatefulSet"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # Kubernetes expands $(POD_NAME) in a later variable's value.
    name = "SCORER_KAFKA__CONSUMER_SETTINGS__GROUP_INSTANCE_ID"
    environ = {name: env[name]["value"].replace("$(POD_NAME)", "ls-1")}
    # An operator's own consumer setting in the ConfigMap is kept beside it.
    raw = yaml.safe_load(by_kind()["ConfigMap"]["data"]["config.yaml"])
    raw["kafka"]["consumer_settings"] = {"queued.max.messages.kbytes": 16384}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))

    config = load_config(path, environ=environ)

    assert config.kafka.consumer_settings == {
        "queued.max.messages.kbytes": 16384,
        "group.instance.id": "ls-1",
    }
    assert consumer_settings(config)["group.instance.id"] == "ls-1"
    transactional = config.model_copy(
        update={"pipeline": config.pipeline.model_copy(update={"transactional": True})}
    )
    assert transactional_id(transactional).endswith("-ls-1")


def config_map_config() -> Any:
    data = by_kind()["ConfigMap"]["data"]["config.yaml"]
    return parse_config(yaml.safe_load(data))


def test_config_map_holds_the_default_rules_and_a_valid_config() -> None:
    config = config_map_config()
    default = load_config(environ={})

    assert config.scoring == default.scoring
    assert config.logging.format == "json"


def test_the_metrics_address_is_the_images_not_the_config_maps(
    tmp_path: Path,
) -> None:
    # The image's variables win over the file: a port set in the ConfigMap
    # would silently change nothing, so it sets none.
    raw = yaml.safe_load(by_kind()["ConfigMap"]["data"]["config.yaml"])
    image = (ROOT / "Dockerfile").read_text()
    pod = by_kind()["StatefulSet"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    assert set(raw["metrics"]) & {"host", "port"} == set()
    assert "SCORER_METRICS__HOST=0.0.0.0" in image
    assert "SCORER_METRICS__PORT=9108" in image

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    image_env = {"SCORER_METRICS__HOST": "0.0.0.0", "SCORER_METRICS__PORT": "9108"}
    served = load_config(path, environ=image_env).metrics
    assert (served.host, served.port) == ("0.0.0.0", 9108)
    assert container["ports"][0]["containerPort"] == served.port


def test_secret_variables_set_real_config_fields(tmp_path: Path) -> None:
    secret = by_kind()["Secret"]["stringData"]
    path = tmp_path / "config.yaml"
    path.write_text(by_kind()["ConfigMap"]["data"]["config.yaml"])

    config = load_config(path, environ=secret)

    assert config.redis.password is not None
    assert config.redis.password.get_secret_value() == "change-me"
    assert config.kafka.secrets["sasl.password"].get_secret_value() == "change-me"
    assert config.kafka.settings["sasl.mechanism"] == "SCRAM-SHA-512"
