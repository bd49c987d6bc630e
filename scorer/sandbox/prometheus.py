"""A Prometheus server from Debian's `prometheus` package, on a loopback port.

It scrapes the given targets every `scrape_interval_s` and may load rule
files, so a test can check what a real Prometheus records from a running
scorer, and that the alert rules load. Its data lives in the work dir.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from scorer.errors import ScorerError
from scorer.sandbox import LOOPBACK_HOST, LocalServer, free_ports, require_tool

logger = logging.getLogger(__name__)

PROMETHEUS_HINT = "install Debian's prometheus package (apt-get install prometheus)"
PROMETHEUS_READY_TIMEOUT_S = 60.0  # ready in ~1 s; a loaded CI box is slower
PROBE_TIMEOUT_S = 2.0  # one HTTP request to the server
# The job name the alert rules of deploy/prometheus select on.
JOB_NAME = "lead-scorer"


class PrometheusServer(LocalServer):
    """`prometheus` bound to 127.0.0.1, scraping `targets` ("host:port")."""

    kind = "prometheus"

    def __init__(
        self,
        targets: Sequence[str],
        *,
        scrape_interval_s: float = 1.0,
        rule_files: Sequence[Path] = (),
        job_name: str = JOB_NAME,
        work_dir: Path | None = None,
        ready_timeout_s: float = PROMETHEUS_READY_TIMEOUT_S,
    ) -> None:
        super().__init__(work_dir, ready_timeout_s)
        self.targets = list(targets)
        self.scrape_interval_s = scrape_interval_s
        self.rule_files = [path.resolve() for path in rule_files]
        self.job_name = job_name
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise ScorerError("prometheus has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK_HOST}:{self.port}"

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector: [{"metric": {...}, "value": [t, v]}]."""
        data = self.api("query", {"query": promql})
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The one value of a query that yields one series, or None for none."""
        result = self.query(promql)
        if not result:
            return None
        if len(result) > 1:
            raise ScorerError(f"{promql} yields {len(result)} series, not one")
        return float(result[0]["value"][1])

    def api(self, endpoint: str, params: dict[str, str] | None = None) -> Any:
        """GET /api/v1/<endpoint>; returns the `data` of a success."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"{self.url}/api/v1/{endpoint}{query}"
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise ScorerError(f"prometheus {endpoint} failed: {body.get('error')}")
        return body["data"]

    def _configure(self) -> None:
        require_tool("prometheus", PROMETHEUS_HINT)
        (self._port,) = free_ports(1)
        interval = f"{int(self.scrape_interval_s * 1000)}ms"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": self.job_name,
                    "scrape_timeout": interval,
                    "static_configs": [{"targets": self.targets}],
                }
            ],
        }
        self._config_path.write_text(yaml.safe_dump(config))

    def _command(self) -> list[str]:
        return [
            require_tool("prometheus", PROMETHEUS_HINT),
            f"--config.file={self._config_path}",
            f"--storage.tsdb.path={self.work_dir / 'data'}",
            f"--web.listen-address={self._address()}",
            "--log.level=warn",
        ]

    def _is_ready(self) -> bool:
        try:
            url = f"{self.url}/-/ready"
            with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _address(self) -> str:
        return f"{LOOPBACK_HOST}:{self.port}"

    @property
    def _config_path(self) -> Path:
        return self.work_dir / "prometheus.yml"
