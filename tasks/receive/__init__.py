"""The webhook receiver's pure parts: request bodies as records, the pump's buffer (inbox), idempotency keys, and the receiver behind `pumphouse serve`."""
