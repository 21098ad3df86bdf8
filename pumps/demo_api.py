"""A tiny JSON API on loopback for pumps/api.yaml: the orders in pumps/data/api/orders.json.

    .venv/bin/python pumps/demo_api.py            # http://127.0.0.1:8765, until Ctrl-C
    .venv/bin/python pumps/demo_api.py --port 0   # any free port; the first line says which

GET /v1/orders?updated_since=ISO&limit=N&after=K answers {"data": [...]} with the orders
updated at or after `updated_since`, N at a time (default 25), and a `Link: <...>; rel="next"`
header while there are more. Only the standard library: it runs anywhere Python does.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

DATA = Path(__file__).parent / "data" / "api" / "orders.json"


class Orders(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    records: list[dict[str, Any]] = []

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/v1/orders":
            return self._send(404, {"error": f"no such endpoint {url.path}; try /v1/orders"})
        q = dict(parse_qsl(url.query))
        try:
            limit, after = int(q.get("limit", 25)), int(q.get("after", 0))
        except ValueError:
            return self._send(400, {"error": "limit and after are whole numbers"})
        since = q.get("updated_since", "")
        rows = [r for r in self.records if str(r.get("updated_at", "")) >= since]
        headers = {}
        if after + limit < len(rows):
            nxt = urlencode({**q, "after": after + limit})
            headers["Link"] = f'<http://{self.headers["Host"]}/v1/orders?{nxt}>; rel="next"'
        self._send(200, {"data": rows[after : after + limit]}, headers)

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"demo_api: {format % args}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    Orders.records = json.loads(DATA.read_text(encoding="utf-8"))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Orders)
    server.daemon_threads = True
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
