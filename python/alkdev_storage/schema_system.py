"""The system file's schema (``system.db``): identity, audit, and the
canonical copy of system-scoped graph types. SPEC §4."""

from __future__ import annotations

from alkdev_storage.migrations import Migration, Schema
from alkdev_storage.schema_tenant import COMMON, TYPE_TABLES, touch_trigger

SYSTEM_APPLICATION_ID = 0x414C4B53  # "ALKS"

V1_IDENTITY = f"""
CREATE TABLE accounts (
  {COMMON},
  email TEXT NOT NULL UNIQUE,
  display_name TEXT,
  access_level TEXT NOT NULL DEFAULT 'user' CHECK (access_level IN ('admin', 'user', 'service')),
  status TEXT NOT NULL DEFAULT 'active'
    CHECK (status IN ('active', 'suspended', 'deactivated'))
);
CREATE TABLE organizations (
  {COMMON},
  name TEXT NOT NULL UNIQUE,
  slug TEXT NOT NULL UNIQUE,
  owner_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE RESTRICT
);
CREATE INDEX organizations_owner_id ON organizations(owner_id);
CREATE TABLE organization_members (
  {COMMON},
  org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  membership_level TEXT NOT NULL CHECK (membership_level IN ('owner', 'admin', 'member')),
  UNIQUE (org_id, account_id)
);
CREATE INDEX organization_members_org_id ON organization_members(org_id);
CREATE INDEX organization_members_account_id ON organization_members(account_id);
CREATE TABLE api_keys (
  {COMMON},
  owner_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  key_hash TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL DEFAULT '',
  enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
  expires_at INTEGER,
  revoked_at INTEGER,
  rotated_to_id TEXT REFERENCES api_keys(id) ON DELETE SET NULL,
  last_used_at INTEGER
);
CREATE INDEX api_keys_owner_id ON api_keys(owner_id);
CREATE INDEX api_keys_rotated_to_id ON api_keys(rotated_to_id);
CREATE TABLE peer_credentials (
  {COMMON},
  owner_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  credential_type TEXT NOT NULL DEFAULT 'ssh_key'
    CHECK (credential_type IN ('ssh_key', 'cert_authority')),
  fingerprint TEXT NOT NULL UNIQUE,
  public_key_data TEXT NOT NULL,
  name TEXT NOT NULL DEFAULT '',
  enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
  expires_at INTEGER,
  revoked_at INTEGER
);
CREATE INDEX peer_credentials_owner_id ON peer_credentials(owner_id);
CREATE TABLE audit_logs (
  {COMMON},
  action TEXT NOT NULL,
  owner_id TEXT REFERENCES accounts(id) ON DELETE RESTRICT,
  credential_id TEXT,
  credential_type TEXT,
  org_id TEXT REFERENCES organizations(id) ON DELETE SET NULL,
  details TEXT NOT NULL DEFAULT '{{}}' CHECK (json_valid(details))
);
CREATE INDEX audit_logs_owner_id ON audit_logs(owner_id);
CREATE INDEX audit_logs_org_id ON audit_logs(org_id);
CREATE INDEX audit_logs_action ON audit_logs(action, created_at);
{touch_trigger("accounts")}
{touch_trigger("organizations")}
{touch_trigger("organization_members")}
{touch_trigger("api_keys")}
{touch_trigger("peer_credentials")}
{touch_trigger("audit_logs")}
{TYPE_TABLES}
"""

SYSTEM_SCHEMA = Schema(
    "system",
    SYSTEM_APPLICATION_ID,
    (Migration(1, "identity, audit and system graph types", V1_IDENTITY),),
)
