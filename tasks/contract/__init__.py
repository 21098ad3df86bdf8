"""The data contract: the pandera schema compiled to one DuckDB query per batch that types
the rows and lists each row's failed checks (`_errors`).

check: the contract step (check a batch; a spec's schema problems for validate); batch: the
contract query for one batch; columns: a schema's columns as the query needs them. The pandera
side (_pandera_schema, _schema_ref, _checks), the SQL side (_query_plan, _casts, _json_fields)
and the on-disk cache (_cache) are check's parts.
"""

__all__ = ["batch", "check", "columns"]
