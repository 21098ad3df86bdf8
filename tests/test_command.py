"""The command as a new user meets it (issue 21, items 6 and 7): nothing goes silent, a host
that cannot be reached is named at once, and `--version`, `status` and a failed first run
behave on a terminal, in a pipe and in a folder that is not a project.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._http_servers import App, api_spec, hook_spec, serve
from tests.conftest import run_cli
from tests.data import write_orders


def closed_port_url() -> str:
    """The base URL of a real local HTTP server that has been stopped: its port refuses."""
    with serve(App()) as url:
        pass
    return url


def test_a_source_host_that_refuses_is_named_at_once(project: Path, prefect_server: str) -> None:
    base = closed_port_url()
    port = base.rsplit(":", 1)[1]
    # Retries as a throttling server gets them would take minutes: a refusal is not one.
    spec = api_spec(base, batch_rows=100, source_extra="  retries: 8\n  retry_max_wait: 60s\n")
    (project / "pumps" / "api.yaml").write_text(spec)
    done = run_cli("run", "pumps/api.yaml", cwd=project)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: GET {base}/v1/orders: 127.0.0.1:{port} refused the connection "
        "(nothing listens there); is source.url right, and is the server up?"
    )


def test_a_source_host_that_does_not_resolve_is_named_at_once(
    project: Path, prefect_server: str
) -> None:
    from flows.pump import pump
    from schemas.errors import RetriesSpent

    spec = api_spec("http://does-not-exist.invalid", batch_rows=100)
    (project / "pumps" / "api.yaml").write_text(spec)
    with pytest.raises(RetriesSpent) as caught:
        pump(spec_path="pumps/api.yaml")
    assert str(caught.value) == (
        "GET http://does-not-exist.invalid/v1/orders: the host "
        "does-not-exist.invalid (port 80) does not resolve (no such host); "
        "is source.url right?"
    )


def test_a_webhook_sink_host_that_refuses_is_named_at_once(
    project: Path, prefect_server: str
) -> None:
    from flows.pump import pump
    from schemas.errors import RetriesSpent

    base = closed_port_url()
    port = base.rsplit(":", 1)[1]
    write_orders(project / "in", files=1, rows=20)
    (project / "pumps" / "orders.yaml").write_text(hook_spec(base, batch_rows=100, hook_rows=10))
    with pytest.raises(RetriesSpent) as caught:
        pump(spec_path="pumps/orders.yaml")
    assert str(caught.value) == (
        f"POST {base}/hook: 127.0.0.1:{port} refused the connection (nothing listens "
        "there); is sink.url right, and is the server up?"
    )
