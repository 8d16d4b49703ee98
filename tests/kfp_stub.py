"""A stand-in for the Kubeflow Pipelines API server (v2beta1), for tests only: no Kubeflow can
run here. It serves the calls ``kfp.Client`` makes to upload a pipeline and schedule it, keeps
what was created in memory, and records every request so a test can check what was sent."""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PREFIX = "/apis/v2beta1"


class KfpStub:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.recurring: dict[str, dict] = {}
        self.ids = itertools.count(1)

    def handle(self, method: str, path: str, query: dict, body: bytes) -> tuple[int, dict]:
        route = path.removeprefix(PREFIX)
        name = query.get("name", [""])[0]
        if (method, route) == ("GET", "/healthz"):
            return 200, {"multi_user": False}
        if (method, route) in (("GET", "/pipelines"), ("GET", "/experiments")):
            table = self.pipelines if route == "/pipelines" else self.experiments
            wanted = json.loads(query.get("filter", ["{}"])[0] or "{}").get("predicates", [])
            found = [v for v in table.values()
                     if all(v["display_name"] == p.get("string_value", p.get("stringValue"))
                            for p in wanted)]
            key = route.strip("/")
            return 200, {key: found, "total_size": len(found)} if found else {}
        if (method, route) == ("POST", "/pipelines/upload"):
            item = {"pipeline_id": f"pipeline-{next(self.ids)}", "display_name": name}
            self.pipelines[item["pipeline_id"]] = item
            return 200, item
        if (method, route) == ("POST", "/pipelines/upload_version"):
            item = {"pipeline_id": query["pipelineid"][0], "display_name": name,
                    "pipeline_version_id": f"version-{next(self.ids)}"}
            self.versions[item["pipeline_version_id"]] = item
            return 200, item
        if (method, route) == ("POST", "/experiments"):
            item = {**json.loads(body), "experiment_id": f"experiment-{next(self.ids)}"}
            self.experiments[item["experiment_id"]] = item
            return 200, item
        if (method, route) == ("GET", "/recurringruns"):
            found = [r for r in self.recurring.values()
                     if r["experiment_id"] == query.get("experiment_id", [""])[0]]
            return 200, {"recurringRuns": found} if found else {}
        if (method, route) == ("POST", "/recurringruns"):
            item = {**json.loads(body), "recurring_run_id": f"recurring-{next(self.ids)}"}
            self.recurring[item["recurring_run_id"]] = item
            return 200, item
        if method == "DELETE" and route.startswith("/recurringruns/"):
            self.recurring.pop(route.rsplit("/", 1)[1])
            return 200, {}
        return 404, {"error": f"not served by the stub: {method} {path}"}


@contextlib.contextmanager
def serve_kfp_stub() -> Iterator[tuple[str, KfpStub]]:
    stub = KfpStub()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            url = urlparse(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            query = parse_qs(url.query)
            stub.requests.append({"method": self.command, "path": url.path, "query": query,
                                  "body": body})
            status, payload = stub.handle(self.command, url.path, query, body)
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
