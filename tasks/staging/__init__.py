"""The stage step: each input checked, transformed and staged as parquet in the run's staging folder."""
