"""What SQLite can do, for SQLAlchemy's dialect compliance suite.

One class for both drivers (``sqlite+alkdev`` and the stock
``sqlite+pysqlite``), so their results compare like for like: a
requirement is opened when SQLite itself supports the feature, and closed
for one driver only with the reason (`_not_on_alkdev`).
"""

from sqlalchemy.testing import exclusions
from sqlalchemy.testing.requirements import SuiteRequirements


def _not_on_alkdev(reason: str) -> exclusions.compound:
    return exclusions.skip_if(lambda config: config.db.dialect.driver == "alkdev", reason)


# Features SQLite has but SQLAlchemy's SQLite dialect does not reflect or
# render the way the suite expects: these tests fail with the stock
# pysqlite driver too (docs/sqlalchemy.md lists them).
_SQLITE_DIALECT_GAP = exclusions.closed()


class Requirements(SuiteRequirements):
    # ------------------------------------------------------------ schemas
    @property
    def schemas(self) -> exclusions.compound:
        # Closed for both drivers. The stock SQLite provisioning ATTACHes a
        # second file as "test_schema" on each new DB-API connection, and
        # with file databases the suite reaches tables through connections
        # that never ran that hook ("unknown database test_schema" on
        # pysqlite too). For alkdev the feature itself is out of reach:
        # ATTACH binds one SQLite connection, and a database is a writer
        # plus a pool of readers (docs/sqlalchemy.md).
        return exclusions.closed()

    # --------------------------------------------------- DDL and reflection
    @property
    def views(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def temporary_tables(self) -> exclusions.compound:
        return _not_on_alkdev(
            "a TEMP table lives in one SQLite connection; alkdev reads on pooled readers"
        )

    @property
    def temp_table_reflection(self) -> exclusions.compound:
        return self.temporary_tables

    @property
    def temp_table_names(self) -> exclusions.compound:
        return self.temporary_tables

    @property
    def has_temp_table(self) -> exclusions.compound:
        return self.temporary_tables

    @property
    def temporary_views(self) -> exclusions.compound:
        return self.temporary_tables

    @property
    def create_table_as(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def create_temp_table_as(self) -> exclusions.compound:
        return self.temporary_tables

    @property
    def table_ddl_if_exists(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def index_ddl_if_exists(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def check_constraint_reflection(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def foreign_key_constraint_name_reflection(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def foreign_key_constraint_option_reflection_ondelete(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def foreign_key_constraint_option_reflection_onupdate(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def fk_constraint_option_reflection_ondelete_restrict(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def fk_constraint_option_reflection_onupdate_restrict(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def fk_constraint_option_reflection_ondelete_noaction(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def indexes_with_expressions(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def reflect_indexes_with_expressions(self) -> exclusions.compound:
        return _SQLITE_DIALECT_GAP

    @property
    def computed_columns(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def computed_columns_stored(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def computed_columns_virtual(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def computed_columns_reflect_persisted(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def server_defaults(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def expression_server_defaults(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def unicode_ddl(self) -> exclusions.compound:
        return exclusions.open()

    # ------------------------------------------------------------ queries
    @property
    def ctes(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def ctes_on_dml(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def ctes_with_update_delete(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def intersect(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def except_(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def window_functions(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def window_range(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def window_range_numeric(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def nullsordering(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def tuple_in(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def update_from(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def order_by_label_with_expression(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def boolean_col_expressions(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def regexp_match(self) -> exclusions.compound:
        # pysqlite: a Python function SQLAlchemy registers on connect;
        # alkdev: the core's native REGEXP.
        return exclusions.open()

    @property
    def supports_bitwise_and(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def supports_bitwise_or(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def supports_bitwise_not(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def supports_bitwise_shift(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def aggregate_order_by(self) -> exclusions.compound:
        return exclusions.open()

    # -------------------------------------------------------------- types
    @property
    def json_type(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def legacy_unconditional_json_extract(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def date_historic(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def datetime_historic(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def timestamp_microseconds(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def nvarchar_types(self) -> exclusions.compound:
        return exclusions.open()

    # ----------------------------------------------------- transactions
    @property
    def savepoints(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def isolation_level(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def autocommit(self) -> exclusions.compound:
        return exclusions.open()

    @property
    def dbapi_lastrowid(self) -> exclusions.compound:
        return exclusions.open()

    # ------------------------------ not SQLite (or not SQLAlchemy's SQLite)
    @property
    def parens_in_union_contained_select_w_limit_offset(self) -> exclusions.compound:
        return _SQLITE_DIALECT_GAP

    @property
    def parens_in_union_contained_select_wo_limit_offset(self) -> exclusions.compound:
        return _SQLITE_DIALECT_GAP

    @property
    def reflects_pk_names(self) -> exclusions.compound:
        return exclusions.open()
