"""An example data contract as a pandera ibis model: `schema: "example_orders:Orders"` in a spec."""

import ibis.expr.types as ir
import pandera.ibis as pa
from pandera.engines import ibis_engine


class Orders(pa.DataFrameModel):
    """Orders as the shop exports them; checks run inside DuckDB, one verdict per row."""

    order_id: int = pa.Field(ge=0, unique=True)
    customer: str = pa.Field(nullable=True, str_length={"min_value": 1, "max_value": 20})
    amount: float = pa.Field(ge=0, nullable=True)
    status: str = pa.Field(isin=["open", "paid", "void"])
    updated_at: ibis_engine.DateTime = pa.Field(dtype_kwargs={"timezone": "UTC"}, nullable=True)

    @pa.check("customer", name="customer_code")
    def customer_code(cls, data: pa.IbisData) -> ir.BooleanColumn:
        """Customer ids are codes like c123."""
        return data.table[data.key].re_search(r"^c[0-9]+$")

    @pa.dataframe_check(name="void_is_free")
    def void_is_free(cls, data: pa.IbisData) -> ir.BooleanColumn:
        """A void order carries no amount."""
        t = data.table
        return (t.status != "void") | (t.amount == 0)

    class Config:
        strict = "filter"
        coerce = True
