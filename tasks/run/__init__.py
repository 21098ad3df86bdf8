"""One run's course: plan, load, the steps as Prefect tasks, the summary, progress, the deadline, crash points."""
