"""The bounded transforms (select, rename, filter, incremental, dedup), the incremental window, and the filter guard."""
