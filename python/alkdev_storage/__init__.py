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
from alkdev_storage._database import Database, connect
from alkdev_storage._native import (
    ExecuteResult,
    Job,
    RowIterator,
    Savepoint,
    Transaction,
    sqlite_version,
)
from alkdev_storage.errors import (
    AccountNotFoundError,
    AlreadyExistsError,
    ApiKeyNotFoundError,
    AuthenticationError,
    BusyError,
    CantOpenError,
    ConstraintError,
    CorruptError,
    CredentialNotFoundError,
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
    InUseError,
    InvalidPublicKeyError,
    InvalidTenantIdError,
    KeyDisabledError,
    KeyExpiredError,
    KeyRevokedError,
    KeyRotatedError,
    LockedError,
    MembershipNotFoundError,
    MigrationError,
    NestedTransactionError,
    NotADatabaseError,
    NotFoundError,
    NotSupportedError,
    OperationalError,
    OrganizationNotFoundError,
    ParameterCountError,
    ParameterOverflowError,
    ParameterTypeError,
    ProgrammingError,
    ReadOnlyError,
    SchemaChangedError,
    SchemaVersionError,
    StorageError,
    TenantNotFoundError,
    TransactionClosedError,
    UnknownKeyError,
    Warning,
)
from alkdev_storage.metagraph.views import AccountView, Tenant
from alkdev_storage.pubsub import Listener, Lock, LockHeld, Notification
from alkdev_storage.queues import Outbox, Queue
from alkdev_storage.scheduler import (
    CronSchedule,
    LeadershipLost,
    NoSchedulesError,
    Scheduler,
    crontab,
    every_s,
)
from alkdev_storage.storage import Storage
from alkdev_storage.streams import Event, Stream, Subscription

__version__ = "0.1.0"

__all__ = [
    "AccountNotFoundError",
    "AccountView",
    "AlreadyExistsError",
    "ApiKeyNotFoundError",
    "AuthenticationError",
    "BusyError",
    "CantOpenError",
    "ConstraintError",
    "CorruptError",
    "CredentialNotFoundError",
    "CronSchedule",
    "DataError",
    "Database",
    "DatabaseClosedError",
    "DatabaseError",
    "DiskIOError",
    "Error",
    "Event",
    "ExecuteResult",
    "FullError",
    "InUseError",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "InterruptError",
    "InvalidPublicKeyError",
    "InvalidTenantIdError",
    "Job",
    "KeyDisabledError",
    "KeyExpiredError",
    "KeyRevokedError",
    "KeyRotatedError",
    "LeadershipLost",
    "Listener",
    "Lock",
    "LockHeld",
    "LockedError",
    "MembershipNotFoundError",
    "MigrationError",
    "NestedTransactionError",
    "NoSchedulesError",
    "NotADatabaseError",
    "NotFoundError",
    "NotSupportedError",
    "Notification",
    "OperationalError",
    "OrganizationNotFoundError",
    "Outbox",
    "ParameterCountError",
    "ParameterOverflowError",
    "ParameterTypeError",
    "ProgrammingError",
    "Queue",
    "ReadOnlyError",
    "RowIterator",
    "Savepoint",
    "Scheduler",
    "SchemaChangedError",
    "SchemaVersionError",
    "Storage",
    "StorageError",
    "Stream",
    "Subscription",
    "Tenant",
    "TenantNotFoundError",
    "Transaction",
    "TransactionClosedError",
    "UnknownKeyError",
    "Warning",
    "__version__",
    "connect",
    "crontab",
    "errors",
    "every_s",
    "sqlite_version",
]
