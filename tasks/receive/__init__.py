"""The webhook receiver behind `pumphouse serve` (flows/serve.py wires it to Starlette).

bodies: a request body (a JSON object, an array, NDJSON) as records;
inbox: the pump's buffer, each accepted body a new file written atomically, named by arrival;
keys: idempotency keys, durable beside the buffer, expiring after a day;
server: the receiver: token check, rate limit, fsyncs grouped per pump.
"""

__all__ = ["bodies", "inbox", "keys", "server"]
