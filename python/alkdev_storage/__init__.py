"""alkdev-storage: everything a multi-tenant application stores, in SQLite files.

>>> import alkdev_storage as alk, tempfile, os
>>> db = alk.connect(os.path.join(tempfile.mkdtemp(), "app.db"))
>>> db.execute("CREATE TABLE t(x)").rowcount
-1
>>> db.execute("INSERT INTO t(x) VALUES (?)", (41,)).lastrowid
1
>>> db.query("SELECT x + 1 FROM t")
[(42,)]
>>> db.close()
"""

from __future__ import annotations

from alkdev_storage import errors
from alkdev_storage._native import (
    Database,
    ExecuteResult,
    RowIterator,
    Savepoint,
    Transaction,
    connect,
    sqlite_version,
)
from alkdev_storage.errors import (
    BusyError,
    CantOpenError,
    ConstraintError,
    CorruptError,
    DatabaseClosedError,
    DatabaseError,
    DataError,
    DiskIOError,
    Error,
    FullError,
    IntegrityError,
    InterfaceError,
    InternalError,
    InterruptError,
    LockedError,
    NestedTransactionError,
    NotADatabaseError,
    NotSupportedError,
    OperationalError,
    ParameterCountError,
    ParameterOverflowError,
    ParameterTypeError,
    ProgrammingError,
    ReadOnlyError,
    SchemaChangedError,
    TransactionClosedError,
    Warning,
)

__version__ = "0.1.0"

__all__ = [
    "BusyError",
    "CantOpenError",
    "ConstraintError",
    "CorruptError",
    "DataError",
    "Database",
    "DatabaseClosedError",
    "DatabaseError",
    "DiskIOError",
    "Error",
    "ExecuteResult",
    "FullError",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "InterruptError",
    "LockedError",
    "NestedTransactionError",
    "NotADatabaseError",
    "NotSupportedError",
    "OperationalError",
    "ParameterCountError",
    "ParameterOverflowError",
    "ParameterTypeError",
    "ProgrammingError",
    "ReadOnlyError",
    "RowIterator",
    "Savepoint",
    "SchemaChangedError",
    "Transaction",
    "TransactionClosedError",
    "Warning",
    "__version__",
    "connect",
    "errors",
    "sqlite_version",
]
