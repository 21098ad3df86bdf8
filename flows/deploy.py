"""`pumphouse deploy`: create or update one Prefect deployment per pump.

The deployment is the one `tasks.run.deployment.describe` returns (the shape of a
`prefect.yaml` entry), sent to the server the way `prefect deploy` sends it: an upsert
by flow and name, whose schedules replace the old ones. The work pool and each pump's
global concurrency limit are created when missing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate, WorkPoolCreate
from prefect.client.schemas.objects import ConcurrencyOptions
from prefect.client.schemas.schedules import CronSchedule
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.utilities.callables import parameter_schema

from flows.orchestration import api_url, ensure_limit
from schemas.errors import TransientError, UsageError
from schemas.spec import Spec
from tasks.run.deployment import FLOW_NAME, describe, full_name, prefect_key


@dataclass(frozen=True)
class Deployed:
    """One deployment as the server now has it."""

    name: str  # pump/NAME
    id: UUID
    schedule: str  # "CRON (TIMEZONE)", or "" when the spec has none


@dataclass(frozen=True)
class Report:
    pool: str
    pool_type: str
    pool_created: bool
    workdir: str
    deployments: list[Deployed]


def deploy(
    specs: list[tuple[Spec, str]], pool: str, workdir: str | None, image: str | None
) -> Report:
    """Deploy each (spec, spec path relative to the project folder) on `pool`."""
    if workdir is not None and not PurePosixPath(workdir).is_absolute():
        raise UsageError(
            f"--workdir {workdir!r} is not an absolute path; give the project folder as the "
            "worker sees it, e.g. /opt/pumphouse"
        )
    url = api_url()
    if not url:
        raise UsageError(
            "no Prefect server is configured: start one (`prefect server start`), set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api, then deploy again"
        )
    from flows.pump import pump  # the flow's parameters, for the UI's run form

    schema = parameter_schema(pump).model_dump(exclude_unset=True)
    with get_client(sync_client=True) as client:
        if (trouble := client.api_healthcheck()) is not None:
            raise TransientError(
                f"cannot reach the Prefect server at {url} ({type(trouble).__name__}); "
                "start it (`prefect server start`) or fix PREFECT_API_URL, then deploy again"
            )
        existing = _pool_type(client, pool)
        pool_type = existing or "process"  # a missing pool is created as a process pool
        _check_pool(pool, pool_type, workdir, image)
        workdir = workdir or str(Path.cwd().resolve())
        if existing is None:
            _create_pool(client, pool)
        flow_id = client.create_flow_from_name(FLOW_NAME)
        done = []
        for spec, spec_path in specs:
            ensure_limit(client, prefect_key(spec.name))
            entry = describe(spec, spec_path, pool=pool, workdir=workdir, image=image)
            deployment_id = client.create_deployment(flow_id=flow_id, **_payload(entry, schema))
            when = spec.schedule
            done.append(
                Deployed(
                    full_name(spec.name),
                    deployment_id,
                    f"{when.cron} ({when.timezone})" if when else "",
                )
            )
    return Report(pool, pool_type, existing is None, workdir, done)


def _check_pool(pool: str, pool_type: str, workdir: str | None, image: str | None) -> None:
    """A process pool runs flows here; any other type, in a container (of an image)."""
    if pool_type != "process" and workdir is None:
        raise UsageError(
            f"work pool {pool!r} is of type {pool_type}: its flow runs do not see this "
            "folder; pass --workdir with the project folder inside the image "
            "(and --image unless the pool names one)"
        )
    if pool_type == "process" and image:
        raise UsageError(
            f"--image is for Docker and Kubernetes pools; work pool {pool!r} is of type "
            "process and runs flows on the worker's machine"
        )


def _pool_type(client: SyncPrefectClient, name: str) -> str | None:
    try:
        return str(client.read_work_pool(name).type)
    except ObjectNotFound:
        return None


def _create_pool(client: SyncPrefectClient, name: str) -> None:
    """A process pool with Prefect's default job template (as `prefect work-pool create`)."""
    from prefect.workers.process import ProcessWorker

    with contextlib.suppress(ObjectAlreadyExists):  # created by someone else just now
        client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type="process",
                base_job_template=ProcessWorker.get_default_base_job_template(),
            )
        )


def _payload(entry: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A `prefect.yaml` entry as the arguments of `create_deployment`."""
    limit = entry["concurrency_limit"]
    return {
        "name": entry["name"],
        "description": entry["description"],
        "entrypoint": entry["entrypoint"],
        "parameters": entry["parameters"],
        "tags": entry["tags"],
        "work_pool_name": entry["work_pool"]["name"],
        "job_variables": entry["work_pool"]["job_variables"],
        "pull_steps": entry.get("pull", []),
        "concurrency_limit": limit["limit"],
        "concurrency_options": ConcurrencyOptions(collision_strategy=limit["collision_strategy"]),
        "schedules": [
            DeploymentScheduleCreate(
                schedule=CronSchedule(cron=s["cron"], timezone=s["timezone"]), active=True
            )
            for s in entry["schedules"]
        ],
        "parameter_openapi_schema": schema,
        "enforce_parameter_schema": True,
    }
