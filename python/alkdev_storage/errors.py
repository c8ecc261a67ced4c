"""The exception hierarchy of alkdev-storage (PEP 249 names).

Every exception raised by the package derives from :class:`Error` (or
:class:`Warning`). Errors that come from SQLite carry its result code:

>>> import alkdev_storage as alk, tempfile, os
>>> db = alk.connect(os.path.join(tempfile.mkdtemp(), "app.db"))
>>> _ = db.execute("CREATE TABLE t(x UNIQUE)")
>>> _ = db.execute("INSERT INTO t VALUES (1)")
>>> try:
...     db.execute("INSERT INTO t VALUES (1)")
... except alk.ConstraintError as e:
...     print(e.sqlite_errorname, e.sqlite_errorcode)
SQLITE_CONSTRAINT_UNIQUE 2067

The tree::

    Warning
    Error
    ├── InterfaceError
    └── DatabaseError
        ├── DataError
        │   └── ParameterOverflowError (also OverflowError)
        ├── OperationalError
        │   ├── BusyError, LockedError, ReadOnlyError, CantOpenError,
        │   ├── DiskIOError, FullError, InterruptError, SchemaChangedError
        ├── IntegrityError
        │   └── ConstraintError
        ├── InternalError
        ├── NotADatabaseError, CorruptError
        ├── ProgrammingError
        │   ├── ParameterTypeError (also TypeError)
        │   ├── ParameterCountError
        │   ├── DatabaseClosedError
        │   ├── TransactionClosedError
        │   ├── WritingStatementError
        │   └── NestedTransactionError
        └── NotSupportedError
    StorageError (the storage host's own rules)
    ├── NotFoundError (also LookupError)
    │   ├── AccountNotFoundError, OrganizationNotFoundError,
    │   ├── MembershipNotFoundError, ApiKeyNotFoundError,
    │   └── CredentialNotFoundError, TenantNotFoundError
    ├── AlreadyExistsError (also ValueError)
    ├── InUseError (also ValueError)
    ├── InvalidTenantIdError (also ValueError)
    ├── InvalidPublicKeyError (also ValueError)
    ├── DocumentError (also ValueError)
    ├── MissingExtraError (also ImportError)
    ├── TenantHandlesBusyError (also TimeoutError)
    ├── ClusterError (Litestream or NATS failed or refused)
    ├── DecryptionError
    ├── SchemaVersionError, MigrationError
    ├── InvalidInputError (also ValueError)
    │   └── LimitExceededError
    ├── AuthenticationError
    │   ├── UnknownKeyError, KeyDisabledError, KeyExpiredError,
    │   ├── KeyRevokedError, KeyRotatedError,
    │   ├── UnknownCredentialError, CredentialDisabledError,
    │   ├── CredentialExpiredError, CredentialRevokedError
    │   └── AccountInactiveError (also PermissionError)
    ├── ScopeViolationError (also PermissionError)
    │   ├── NotAMemberError, NotTenantAdminError, NotTypeOwnerError,
    │   ├── SystemTypeProtectedError, ReservedTypeNameError,
    │   └── AccessDeniedError, ProtectedGraphError
    ├── InvalidSchemaError (also ValueError)
    │   └── SchemaTooCostlyError
    ├── TypeVersionError (also ValueError)
    └── GraphRuleError (also ValueError)
        ├── UnknownTypeError, ValidationError, MissingEndpointError,
        ├── EndpointTypeError, SelfLoopError, MultiEdgeError,
        └── EdgeDirectionError, ArchivedGraphError, StatusTransitionError
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccessDeniedError",
    "AccountInactiveError",
    "AccountNotFoundError",
    "AlreadyExistsError",
    "ApiKeyNotFoundError",
    "ArchivedGraphError",
    "AuthenticationError",
    "BusyError",
    "CantOpenError",
    "ClusterError",
    "ConstraintError",
    "CorruptError",
    "CredentialDisabledError",
    "CredentialExpiredError",
    "CredentialNotFoundError",
    "CredentialRevokedError",
    "DataError",
    "DatabaseClosedError",
    "DatabaseError",
    "DecryptionError",
    "DiskIOError",
    "DocumentError",
    "EdgeDirectionError",
    "EndpointTypeError",
    "Error",
    "FullError",
    "GraphRuleError",
    "InUseError",
    "InputTypeError",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "InterruptError",
    "InvalidInputError",
    "InvalidPublicKeyError",
    "InvalidSchemaError",
    "InvalidTenantIdError",
    "KeyDisabledError",
    "KeyExpiredError",
    "KeyRevokedError",
    "KeyRotatedError",
    "LimitExceededError",
    "LockedError",
    "MembershipNotFoundError",
    "MigrationError",
    "MissingEndpointError",
    "MissingExtraError",
    "MultiEdgeError",
    "NestedTransactionError",
    "NotADatabaseError",
    "NotAMemberError",
    "NotFoundError",
    "NotSupportedError",
    "NotTenantAdminError",
    "NotTypeOwnerError",
    "OperationalError",
    "OrganizationNotFoundError",
    "ParameterCountError",
    "ParameterOverflowError",
    "ParameterTypeError",
    "ProgrammingError",
    "ProtectedGraphError",
    "ReadOnlyError",
    "ReservedTypeNameError",
    "SchemaChangedError",
    "SchemaTooCostlyError",
    "SchemaVersionError",
    "ScopeViolationError",
    "SelfLoopError",
    "StatusTransitionError",
    "StorageError",
    "SystemTypeProtectedError",
    "TenantHandlesBusyError",
    "TenantNotFoundError",
    "TransactionClosedError",
    "TypeVersionError",
    "UnknownCredentialError",
    "UnknownKeyError",
    "UnknownTypeError",
    "ValidationError",
    "Warning",
    "WritingStatementError",
    "sqlite_error_name",
]


class Warning(Exception):  # noqa: A001 - the PEP 249 name
    """PEP 249 ``Warning``: an important warning, not raised as an error."""


class Error(Exception):
    """Base of every error the package raises.

    ``sqlite_errorcode`` is SQLite's extended result code (``None`` for errors
    that did not come from SQLite) and ``sqlite_errorname`` its symbolic name,
    e.g. ``SQLITE_CONSTRAINT_UNIQUE``.
    """

    sqlite_errorcode: int | None = None
    sqlite_errorname: str | None = None


class InterfaceError(Error):
    """The package itself was misused rather than the database."""


class DatabaseError(Error):
    """An error related to the database."""


class DataError(DatabaseError):
    """A value could not be stored or read as it is: out of range, or TEXT
    that is not valid UTF-8. Fix the value or read the column as a BLOB."""


class ParameterOverflowError(DataError, OverflowError):
    """An int parameter does not fit SQLite's signed 64-bit INTEGER.
    Store such numbers as TEXT."""


class OperationalError(DatabaseError):
    """The database could not carry out the operation for a reason outside
    the caller's SQL: locks, I/O, permissions, a file that cannot be opened."""


class BusyError(OperationalError):
    """Another connection held the write lock for longer than
    ``busy_timeout_ms``. Retry, or raise the timeout."""


class LockedError(OperationalError):
    """A table is locked by another statement of the same connection."""


class ReadOnlyError(OperationalError):
    """A write was attempted on a database opened with ``readonly=True`` (or a
    file the process may not write)."""


class CantOpenError(OperationalError):
    """The file could not be opened: a directory, a missing parent folder,
    or no permission."""


class DiskIOError(OperationalError):
    """The operating system reported an I/O error."""


class FullError(OperationalError):
    """The disk is full."""


class InterruptError(OperationalError):
    """The operation was interrupted."""


class SchemaChangedError(OperationalError):
    """The schema changed under a prepared statement and it could not be
    re-prepared."""


class IntegrityError(DatabaseError):
    """Relational integrity would be violated."""


class ConstraintError(IntegrityError):
    """A UNIQUE, NOT NULL, CHECK, FOREIGN KEY or PRIMARY KEY constraint
    failed; ``sqlite_errorname`` says which kind."""


class InternalError(DatabaseError):
    """SQLite reported an internal error."""


class NotADatabaseError(DatabaseError):
    """The file is not an SQLite database (or is encrypted)."""


class CorruptError(DatabaseError):
    """The database file is malformed. Restore it from a backup."""


class ProgrammingError(DatabaseError):
    """The caller's SQL or use of the API is wrong: a syntax error, a missing
    table, a wrong number of parameters, using a closed object."""


class ParameterTypeError(ProgrammingError, TypeError):
    """A parameter's Python type has no SQLite equivalent. Use None, int,
    float, str, bytes (or bytearray/memoryview) or bool."""


class ParameterCountError(ProgrammingError):
    """The parameters given do not match the statement's placeholders."""


class DatabaseClosedError(ProgrammingError):
    """The database was closed; open it again with ``connect()``."""


class TransactionClosedError(ProgrammingError):
    """The transaction was already committed or rolled back; start a new one."""


class WritingStatementError(ProgrammingError):
    """``iterate()`` streams read-only statements and was given one that
    writes (SQLite's own verdict, so ``WITH ... INSERT`` counts). Run it with
    ``execute()`` or ``query()``."""


class NestedTransactionError(ProgrammingError):
    """This thread already holds the database's writer through an open
    transaction. Run the statement through that transaction, or nest with
    ``tx.savepoint()``."""


class NotSupportedError(DatabaseError):
    """The request is not supported, e.g. an in-memory database."""


class StorageError(Error):
    """Base of the errors raised by the storage host (``alk.Storage``) for
    its own rules, as opposed to errors SQLite reports."""


class NotFoundError(StorageError, LookupError):
    """The record asked for does not exist (or no longer does). Check the
    id, or list what exists."""


class AccountNotFoundError(NotFoundError):
    """No account with that id or email."""


class OrganizationNotFoundError(NotFoundError):
    """No organization with that id or slug."""


class MembershipNotFoundError(NotFoundError):
    """The account is not a member of the organization."""


class ApiKeyNotFoundError(NotFoundError):
    """No API key with that id."""


class CredentialNotFoundError(NotFoundError):
    """No peer credential with that id or fingerprint."""


class TenantNotFoundError(NotFoundError):
    """The organization has no tenant file (never created, or archived)."""


class AlreadyExistsError(StorageError, ValueError):
    """A unique value (email, organization name or slug, membership, key
    fingerprint) is already taken. Pick another, or update the existing
    record."""


class InUseError(StorageError, ValueError):
    """The record is still referenced and cannot be deleted: an account that
    owns organizations or appears in the audit log, or an organization's
    owner membership. Deactivate the account, or transfer ownership first."""


class InvalidTenantIdError(StorageError, ValueError):
    """An organization id that cannot name a tenant file: empty, too long,
    or containing anything but ASCII letters, digits, ``-`` and ``_``.
    Nothing on disk was touched."""


class InvalidPublicKeyError(StorageError, ValueError):
    """Not an OpenSSH public key we accept (``ssh-ed25519``, ``ssh-rsa``,
    ``ecdsa-sha2-nistp256/384/521``), or its key data is malformed."""


class DocumentError(StorageError, ValueError):
    """A JSON or YAML document (a graph-type spec, a file given to the CLI)
    could not be parsed. ``source`` names where it came from; ``line`` and
    ``column`` (1-based, None when unknown) point at the problem."""

    def __init__(
        self, message: str, *, source: str, line: int | None = None, column: int | None = None
    ) -> None:
        super().__init__(message)
        self.source = source
        self.line = line
        self.column = column


class InvalidInputError(StorageError, ValueError):
    """An argument's value is refused before anything is written: a NUL
    character in a name, key or email, a document key that is not a str,
    an empty name. The message names the argument."""


class InputTypeError(StorageError, TypeError):
    """An argument of a type we do not take (a key that is not a str, a
    mapping where a list belongs). The message names the argument and the
    type given; nothing was written."""


class MissingExtraError(StorageError, ImportError):
    """A feature needs a package that is not installed. The message names
    the extra that brings it: ``pip install 'alkdev-storage[EXTRA]'``."""


class ClusterError(StorageError):
    """Litestream or NATS JetStream failed or refused (docs/cluster.md): a
    server that cannot be reached, a replica that cannot be restored, a
    message JetStream rejected. The message names the server or file."""


class DecryptionError(StorageError):
    """An encrypted secret does not decrypt: the password is wrong, or the
    salt, IV or data were changed (AES-GCM's tag cannot tell which). Nothing
    is returned; check the password, or restore the secret."""


class TenantHandlesBusyError(StorageError, TimeoutError):
    """Every open tenant handle stayed leased for the whole wait
    (``lease_timeout_s``), so no other tenant file could be opened within
    ``max_open``. End leases sooner (``with store.tenant(id) as t:``), or
    raise ``max_open_tenants`` or the wait."""


class SchemaVersionError(StorageError):
    """The file was written by a newer alkdev-storage (its schema version is
    above what this version knows), or is not the kind of file expected.
    Upgrade the package; the file was not changed."""


class MigrationError(StorageError):
    """A schema migration failed. Its transaction was rolled back, so the
    file is exactly as it was before; the cause is chained."""


class AuthenticationError(StorageError):
    """A credential was refused. The subclass says why; the attempt is in
    the audit log."""


class UnknownKeyError(AuthenticationError):
    """No API key matches."""


class KeyDisabledError(AuthenticationError):
    """The API key exists but is disabled. Enable it, or use another."""


class KeyExpiredError(AuthenticationError):
    """The API key is past its expiry. Create a new one."""


class KeyRevokedError(AuthenticationError):
    """The API key was revoked. Create a new one."""


class KeyRotatedError(AuthenticationError):
    """The API key was rotated; use the key it was rotated to."""


class AccountInactiveError(AuthenticationError, PermissionError):
    """The account is suspended or deactivated: its API keys and peer
    credentials are refused, and it may not open or write tenant files
    (checked on every write of an open handle too). Set its status back to
    ``active`` to let it in again."""


class UnknownCredentialError(AuthenticationError):
    """No peer credential has that fingerprint."""


class CredentialDisabledError(AuthenticationError):
    """The peer credential exists but is disabled. Enable it, or use another."""


class CredentialExpiredError(AuthenticationError):
    """The peer credential is past its expiry. Register the key again."""


class CredentialRevokedError(AuthenticationError):
    """The peer credential was revoked. Register a new key."""


class LimitExceededError(InvalidInputError):
    """An input is over one of the storage host's limits (`alk.Limits`):
    a document too large or too deeply nested, a key, name or email too
    long. The message names the limit and its value; nothing was written.
    Send less, or raise the limit where you open the storage."""


class ScopeViolationError(StorageError, PermissionError):
    """The caller may not do this (SPEC §5 scope rules, SPEC §7 access
    control). Nothing was changed; the attempt is in the audit log."""


class NotAMemberError(ScopeViolationError):
    """The account is not a member of the organization whose tenant file it
    tried to use."""


class NotTenantAdminError(ScopeViolationError):
    """Only an organization's owners and admins register, alter or delete
    its tenant-scoped graph types."""


class NotTypeOwnerError(ScopeViolationError):
    """A user-scoped graph type belongs to the account that registered it;
    only that account alters or deletes it or creates graphs of it."""


class SystemTypeProtectedError(ScopeViolationError):
    """System graph types are defined by the platform (``store.graph_types``);
    a tenant can use them but never register, alter or delete one."""


class ReservedTypeNameError(ScopeViolationError):
    """The name belongs to a system graph type; pick another."""


class AccessDeniedError(ScopeViolationError):
    """The organization's ACL graph does not give the account what the
    operation needs (docs/acl.md). ``.decision`` is the `Decision` that
    refused it; its ``reason`` names the missing scope or the broken link."""

    def __init__(self, message: str, decision: Any = None) -> None:
        super().__init__(message)
        self.decision: Any = decision  # an alkdev_storage.acl.Decision


class ProtectedGraphError(ScopeViolationError):
    """The graph is one the storage manages itself (the ACL graph, the
    secrets graph): read it like any graph, change it only through
    ``tenant.acl`` or ``tenant.secrets``."""


class InvalidSchemaError(StorageError, ValueError):
    """A node or edge type's JSON Schema is not a valid schema. Fix the
    schema; nothing was registered."""


class SchemaTooCostlyError(InvalidSchemaError):
    """A JSON Schema registered by a tenant or user could cost more to
    validate than the budget allows (`Limits.schema_expansion`): nested
    ``anyOf``/``oneOf``/``allOf``/``$ref`` that multiply the subschemas checked at
    one place in a document. Nothing was registered. Simplify the schema
    (share a definition instead of branching into it repeatedly)."""


class TypeVersionError(StorageError, ValueError):
    """A graph type's spec changed but its ``version`` did not go up (or
    went down). Register the change with a higher version."""


class GraphRuleError(StorageError, ValueError):
    """A node or edge write broke a rule of the metagraph (SPEC §5). The
    subclass names the rule; nothing was written."""


class UnknownTypeError(GraphRuleError):
    """The graph's type has no node or edge type of that name (or the graph
    has no type, or no graph type has that name)."""


class ValidationError(GraphRuleError):
    """Attributes do not satisfy their type's JSON Schema. ``violations``
    lists every problem as ``(json_pointer, message)`` pairs."""

    def __init__(self, message: str, violations: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.violations: list[tuple[str, str]] = list(violations or [])


class MissingEndpointError(GraphRuleError):
    """An edge names a source or target node that is not in the graph."""


class EndpointTypeError(GraphRuleError):
    """The edge type does not allow a node of that type at that end."""


class SelfLoopError(GraphRuleError):
    """The graph type does not allow an edge from a node to itself."""


class MultiEdgeError(GraphRuleError):
    """The graph type allows one edge per pair of nodes (unordered for
    undirected edges), and that pair already has one."""


class EdgeDirectionError(GraphRuleError):
    """A directed graph got an undirected edge (undirected graphs store
    every edge as undirected; mixed graphs take both)."""


class ArchivedGraphError(GraphRuleError):
    """The graph is archived, or has lost its type: it is read-only. Set its
    status back to ``active`` to write again."""


class StatusTransitionError(GraphRuleError):
    """Graph status moves draft → active → archived, draft → archived, or
    archived → active; nothing else."""


_PRIMARY_NAMES = {
    1: "SQLITE_ERROR",
    2: "SQLITE_INTERNAL",
    3: "SQLITE_PERM",
    4: "SQLITE_ABORT",
    5: "SQLITE_BUSY",
    6: "SQLITE_LOCKED",
    7: "SQLITE_NOMEM",
    8: "SQLITE_READONLY",
    9: "SQLITE_INTERRUPT",
    10: "SQLITE_IOERR",
    11: "SQLITE_CORRUPT",
    12: "SQLITE_NOTFOUND",
    13: "SQLITE_FULL",
    14: "SQLITE_CANTOPEN",
    15: "SQLITE_PROTOCOL",
    16: "SQLITE_EMPTY",
    17: "SQLITE_SCHEMA",
    18: "SQLITE_TOOBIG",
    19: "SQLITE_CONSTRAINT",
    20: "SQLITE_MISMATCH",
    21: "SQLITE_MISUSE",
    22: "SQLITE_NOLFS",
    23: "SQLITE_AUTH",
    24: "SQLITE_FORMAT",
    25: "SQLITE_RANGE",
    26: "SQLITE_NOTADB",
    27: "SQLITE_NOTICE",
    28: "SQLITE_WARNING",
}

# Extended result codes, from sqlite3.h.
_EXTENDED_NAMES = {
    257: "SQLITE_ERROR_MISSING_COLLSEQ",
    513: "SQLITE_ERROR_RETRY",
    769: "SQLITE_ERROR_SNAPSHOT",
    266: "SQLITE_IOERR_READ",
    522: "SQLITE_IOERR_SHORT_READ",
    778: "SQLITE_IOERR_WRITE",
    1034: "SQLITE_IOERR_FSYNC",
    1290: "SQLITE_IOERR_DIR_FSYNC",
    1546: "SQLITE_IOERR_TRUNCATE",
    1802: "SQLITE_IOERR_FSTAT",
    2058: "SQLITE_IOERR_UNLOCK",
    2314: "SQLITE_IOERR_RDLOCK",
    2570: "SQLITE_IOERR_DELETE",
    3082: "SQLITE_IOERR_NOMEM",
    3338: "SQLITE_IOERR_ACCESS",
    3594: "SQLITE_IOERR_CHECKRESERVEDLOCK",
    3850: "SQLITE_IOERR_LOCK",
    4106: "SQLITE_IOERR_CLOSE",
    4618: "SQLITE_IOERR_SHMOPEN",
    4874: "SQLITE_IOERR_SHMSIZE",
    5130: "SQLITE_IOERR_SHMLOCK",
    5386: "SQLITE_IOERR_SHMMAP",
    5642: "SQLITE_IOERR_SEEK",
    5898: "SQLITE_IOERR_DELETE_NOENT",
    6154: "SQLITE_IOERR_MMAP",
    6410: "SQLITE_IOERR_GETTEMPPATH",
    6666: "SQLITE_IOERR_CONVPATH",
    6922: "SQLITE_IOERR_VNODE",
    7178: "SQLITE_IOERR_AUTH",
    7434: "SQLITE_IOERR_BEGIN_ATOMIC",
    7690: "SQLITE_IOERR_COMMIT_ATOMIC",
    7946: "SQLITE_IOERR_ROLLBACK_ATOMIC",
    8202: "SQLITE_IOERR_DATA",
    8458: "SQLITE_IOERR_CORRUPTFS",
    262: "SQLITE_LOCKED_SHAREDCACHE",
    518: "SQLITE_LOCKED_VTAB",
    261: "SQLITE_BUSY_RECOVERY",
    517: "SQLITE_BUSY_SNAPSHOT",
    773: "SQLITE_BUSY_TIMEOUT",
    270: "SQLITE_CANTOPEN_NOTEMPDIR",
    526: "SQLITE_CANTOPEN_ISDIR",
    782: "SQLITE_CANTOPEN_FULLPATH",
    1038: "SQLITE_CANTOPEN_CONVPATH",
    1294: "SQLITE_CANTOPEN_DIRTYWAL",
    1550: "SQLITE_CANTOPEN_SYMLINK",
    267: "SQLITE_CORRUPT_VTAB",
    523: "SQLITE_CORRUPT_SEQUENCE",
    779: "SQLITE_CORRUPT_INDEX",
    264: "SQLITE_READONLY_RECOVERY",
    520: "SQLITE_READONLY_CANTLOCK",
    776: "SQLITE_READONLY_ROLLBACK",
    1032: "SQLITE_READONLY_DBMOVED",
    1288: "SQLITE_READONLY_CANTINIT",
    1544: "SQLITE_READONLY_DIRECTORY",
    516: "SQLITE_ABORT_ROLLBACK",
    275: "SQLITE_CONSTRAINT_CHECK",
    531: "SQLITE_CONSTRAINT_COMMITHOOK",
    787: "SQLITE_CONSTRAINT_FOREIGNKEY",
    1043: "SQLITE_CONSTRAINT_FUNCTION",
    1299: "SQLITE_CONSTRAINT_NOTNULL",
    1555: "SQLITE_CONSTRAINT_PRIMARYKEY",
    1811: "SQLITE_CONSTRAINT_TRIGGER",
    2067: "SQLITE_CONSTRAINT_UNIQUE",
    2323: "SQLITE_CONSTRAINT_VTAB",
    2579: "SQLITE_CONSTRAINT_ROWID",
    2835: "SQLITE_CONSTRAINT_PINNED",
    3091: "SQLITE_CONSTRAINT_DATATYPE",
    283: "SQLITE_NOTICE_RECOVER_WAL",
    539: "SQLITE_NOTICE_RECOVER_ROLLBACK",
    284: "SQLITE_WARNING_AUTOINDEX",
    279: "SQLITE_AUTH_USER",
}

_CLASS_BY_PRIMARY: dict[int, type[Error]] = {
    2: InternalError,
    3: OperationalError,
    4: OperationalError,
    5: BusyError,
    6: LockedError,
    7: OperationalError,
    8: ReadOnlyError,
    9: InterruptError,
    10: DiskIOError,
    11: CorruptError,
    12: OperationalError,
    13: FullError,
    14: CantOpenError,
    15: OperationalError,
    16: OperationalError,
    17: SchemaChangedError,
    18: DataError,
    19: ConstraintError,
    20: IntegrityError,
    21: ProgrammingError,
    22: OperationalError,
    23: OperationalError,
    24: OperationalError,
    25: ParameterCountError,
    26: NotADatabaseError,
}


def sqlite_error_name(code: int) -> str:
    """The symbolic name of an SQLite (extended) result code.

    >>> sqlite_error_name(2067)
    'SQLITE_CONSTRAINT_UNIQUE'
    >>> sqlite_error_name(5)
    'SQLITE_BUSY'
    """
    return _EXTENDED_NAMES.get(code) or _PRIMARY_NAMES.get(code & 0xFF, f"SQLITE_UNKNOWN_{code}")


def _make_error(class_name: str, message: str, code: int | None) -> Error:
    """Instantiate one of this module's classes by name (used by the native
    core) with the SQLite code and name attached."""
    cls = globals()[class_name]
    exc: Error = cls(message)
    if code is not None:
        exc.sqlite_errorcode = code
        exc.sqlite_errorname = sqlite_error_name(code)
    return exc


def _sqlite_error(code: int, message: str, while_preparing: bool) -> Error:
    """Choose the class for an SQLite result code. A generic ``SQLITE_ERROR``
    raised while compiling a statement is a mistake in the SQL
    (``ProgrammingError``); raised while running, it is operational."""
    primary = code & 0xFF
    if primary == 1:
        cls: type[Error] = ProgrammingError if while_preparing else OperationalError
    else:
        cls = _CLASS_BY_PRIMARY.get(primary, DatabaseError)
    return _make_error(cls.__name__, message, code)
