"""What Prefect knows a pump by, and the deployment a spec describes.

A pump is one deployment of the one generic flow, named after the pump, with the spec's
path as its only parameter. `describe` returns the entry in `prefect.yaml`'s own shape,
so `pumphouse deploy` and `prefect deploy --all` create the same deployment.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from schemas.errors import UsageError
from schemas.spec import Spec

FLOW_NAME = "pump"
# A module path, not a file path: the flow is imported from the installed package, so the
# project folder a worker runs in needs only the specs (and the data they name).
ENTRYPOINT = "flows.pump.pump"
DEFAULT_POOL = "pumphouse"
WORKDIR_STEP = "prefect.deployments.steps.set_working_directory"


def full_name(pump: str) -> str:
    """`FLOW/DEPLOYMENT`, as `prefect deployment run` takes it."""
    return f"{FLOW_NAME}/{pump}"


def run_tag(pump: str) -> str:
    """The tag every flow run of the pump carries (deployed or run by hand)."""
    return f"pump:{pump}"


def prefect_key(pump: str) -> str:
    """The pump's artifact key and global concurrency limit: `pump-NAME`.

    Artifact keys allow only lowercase letters, digits and dashes; a pump name has no
    dash, so replacing `_` keeps two pumps apart.
    """
    return "pump-" + pump.replace("_", "-")


def spec_parameter(spec_path: Path, project: Path) -> str:
    """The spec's path as the flow gets it: relative to the project folder, with `/`."""
    absolute = (project / spec_path).resolve()
    try:
        relative = absolute.relative_to(project.resolve())
    except ValueError:
        raise UsageError(
            f"{spec_path} is outside the project folder {project}; a deployment runs in the "
            "project folder, so deploy specs that live there (e.g. pumps/NAME.yaml)"
        ) from None
    return str(PurePosixPath(*relative.parts))


def describe(
    spec: Spec,
    spec_path: str,
    pool: str = DEFAULT_POOL,
    workdir: str | None = None,
    image: str | None = None,
) -> dict[str, Any]:
    """The pump's deployment as a `prefect.yaml` entry.

    `workdir` is the project folder as the worker sees it (a `set_working_directory` pull
    step); without it, `prefect deploy` uses the folder it runs in.
    """
    entry: dict[str, Any] = {
        "name": spec.name,
        "description": f"Pump {spec.name}: runs {spec_path} through the generic pumphouse flow.",
        "entrypoint": ENTRYPOINT,
        "parameters": {"spec_path": spec_path},
        "tags": ["pumphouse", run_tag(spec.name)],
        "work_pool": {"name": pool, "job_variables": {"image": image} if image else {}},
        # A run that comes due while one is in flight waits for it (never runs beside it).
        "concurrency_limit": {"limit": 1, "collision_strategy": "ENQUEUE"},
        "schedules": (
            [{"cron": spec.schedule.cron, "timezone": spec.schedule.timezone}]
            if spec.schedule
            else []
        ),
    }
    if workdir is not None:
        entry["pull"] = [{WORKDIR_STEP: {"directory": workdir}}]
    return entry
