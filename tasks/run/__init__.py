"""One run's course and what watches it.

plan: the run's inputs; load: the staged run into the sink; steps: the steps as Prefect tasks
(the one module here that imports Prefect); as_started: the spec a resumed load keeps;
summary, progress: what a run reports; deadline: limits.max_run_seconds;
memory: the run's memory ceiling (limits.memory for the whole process); faults: crash
points for tests; deployment: what Prefect knows a pump by.
"""

__all__ = [
    "as_started",
    "deadline",
    "deployment",
    "faults",
    "load",
    "memory",
    "plan",
    "progress",
    "steps",
    "summary",
]
