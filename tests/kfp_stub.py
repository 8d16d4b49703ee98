"""A stand-in for the Kubeflow Pipelines API server (v2beta1), for tests only: no Kubeflow can
run here. It serves the calls ``kfp.Client`` makes to upload a pipeline, schedule it and list
what runs, keeps what was created in memory, and records every request so a test can check
what was sent. It behaves as a multi-user backend does where the scheduling depends on it:
- with ``token`` set, a call without ``Authorization: Bearer <token>`` is refused (401), as
  Kubeflow's auth (the projected ServiceAccount token, audience pipelines.kubeflow.org) does;
- pipelines and experiments belong to a namespace, and listing is per namespace;
- lists are paginated (``page_size``, ``next_page_token``);
- deleting a recurring run kills its active runs, as the garbage collection of a deleted
  ScheduledWorkflow's Workflows does; disabling one does not."""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PREFIX = "/apis/v2beta1"
ACTIVE = ("PENDING", "RUNNING")


class KfpStub:
    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.requests: list[dict] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.recurring: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.killed: list[str] = []
        self.refuse_create = False  # the backend refuses new recurring runs (e.g. a quota)
        self.ids = itertools.count(1)
        self.lock = threading.Lock()

    def start_run(self, recurring_run_id: str, state: str = "RUNNING") -> str:
        """A run the recurring run started (what the backend's scheduler would do)."""
        run_id = f"run-{next(self.ids)}"
        self.runs[run_id] = {"run_id": run_id, "recurring_run_id": recurring_run_id,
                             "experiment_id": self.recurring[recurring_run_id]["experiment_id"],
                             "state": state}
        return run_id

    def add_recurring(self, experiment_id: str, name: str) -> str:
        item = {"recurring_run_id": f"recurring-{next(self.ids)}", "display_name": name,
                "experiment_id": experiment_id, "status": "ENABLED"}
        self.recurring[item["recurring_run_id"]] = item
        return item["recurring_run_id"]

    @staticmethod
    def _page(items: list[dict], key: str, query: dict) -> dict:
        size = int(query.get("page_size", ["10"])[0] or 10)
        start = int(query.get("page_token", ["0"])[0] or 0)
        page = items[start:start + size]
        out: dict = {key: page, "total_size": len(items)} if page else {}
        if start + size < len(items):
            out["next_page_token"] = str(start + size)
        return out

    @staticmethod
    def _named(items, query: dict) -> list[dict]:
        wanted = json.loads(query.get("filter", ["{}"])[0] or "{}").get("predicates", [])
        namespace = query.get("namespace", [""])[0]
        return [v for v in items if v.get("namespace", "") == namespace
                and all(v["display_name"] == p.get("string_value", p.get("stringValue"))
                        for p in wanted)]

    def handle(self, method: str, path: str, query: dict, body: bytes,
               headers: dict) -> tuple[int, dict]:
        route = path.removeprefix(PREFIX)
        if (method, route) == ("GET", "/healthz"):
            return 200, {"multi_user": self.token is not None}
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "Unauthenticated: no valid bearer token", "code": 16}
        with self.lock:
            return self._route(method, route, query, body)

    def _route(self, method: str, route: str, query: dict, body: bytes) -> tuple[int, dict]:
        name = query.get("name", [""])[0]
        if (method, route) == ("GET", "/pipelines"):
            return 200, self._page(self._named(self.pipelines.values(), query), "pipelines",
                                   query)
        if (method, route) == ("GET", "/experiments"):
            return 200, self._page(self._named(self.experiments.values(), query),
                                   "experiments", query)
        if (method, route) == ("POST", "/pipelines/upload"):
            item = {"pipeline_id": f"pipeline-{next(self.ids)}", "display_name": name,
                    "namespace": query.get("namespace", [""])[0]}
            self.pipelines[item["pipeline_id"]] = item
            return 200, item
        if (method, route) == ("POST", "/pipelines/upload_version"):
            item = {"pipeline_id": query["pipelineid"][0], "display_name": name,
                    "pipeline_version_id": f"version-{next(self.ids)}"}
            self.versions[item["pipeline_version_id"]] = item
            return 200, item
        if (method, route) == ("POST", "/experiments"):
            item = {**json.loads(body), "experiment_id": f"experiment-{next(self.ids)}"}
            found = self._named(self.experiments.values(),
                                {"namespace": [item.get("namespace", "")],
                                 "filter": [json.dumps({"predicates": [
                                     {"string_value": item["display_name"]}]})]})
            if found:
                return 409, {"error": "experiment exists", "code": 6}
            self.experiments[item["experiment_id"]] = item
            return 200, item
        if (method, route) == ("GET", "/recurringruns"):
            found = [r for r in self.recurring.values()
                     if r["experiment_id"] == query.get("experiment_id", [""])[0]]
            return 200, self._page(found, "recurringRuns", query)
        if (method, route) == ("POST", "/recurringruns"):
            if self.refuse_create:
                return 500, {"error": "recurring run quota exceeded", "code": 8}
            item = {**json.loads(body), "recurring_run_id": f"recurring-{next(self.ids)}",
                    "status": "ENABLED"}
            self.recurring[item["recurring_run_id"]] = item
            return 200, item
        if method == "POST" and route.startswith("/recurringruns/"):
            run_id, _, action = route.rsplit("/", 1)[1].partition(":")
            self.recurring[run_id]["status"] = {"disable": "DISABLED", "enable": "ENABLED"}[
                action]
            return 200, {}
        if method == "DELETE" and route.startswith("/recurringruns/"):
            gone = self.recurring.pop(route.rsplit("/", 1)[1])
            for run in self.runs.values():  # the ScheduledWorkflow's Workflows go with it
                if run["recurring_run_id"] == gone["recurring_run_id"] and \
                        run["state"] in ACTIVE:
                    run["state"] = "FAILED"
                    self.killed.append(run["run_id"])
            return 200, {}
        if (method, route) == ("GET", "/runs"):
            found = [r for r in self.runs.values()
                     if r["experiment_id"] == query.get("experiment_id", [""])[0]]
            return 200, self._page(found, "runs", query)
        return 404, {"error": f"not served by the stub: {method} {route}"}


@contextlib.contextmanager
def serve_kfp_stub(token: str | None = None) -> Iterator[tuple[str, KfpStub]]:
    stub = KfpStub(token)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            url = urlparse(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            query = parse_qs(url.query)
            headers = {k.lower(): v for k, v in self.headers.items()}  # case-insensitive
            stub.requests.append({"method": self.command, "path": url.path, "query": query,
                                  "body": body, "headers": headers})
            status, payload = stub.handle(self.command, url.path, query, body, headers)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", stub
    finally:
        server.shutdown()
