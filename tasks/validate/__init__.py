"""What `pumphouse validate` checks beyond the spec.

preflight: everything validate checks, the spec, then what needs the engine; overlap: a sink or
the state folder inside the source.
"""

__all__ = ["overlap", "preflight"]
