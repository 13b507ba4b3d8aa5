"""The Postgres store's tables (made on first use, in the store's schema)."""

from __future__ import annotations

__all__ = ["TABLES", "VECTOR_SCHEMA"]

#: Where the pgvector extension lives and its version.
VECTOR_SCHEMA = (
    "SELECT extnamespace::regnamespace::text, extversion FROM pg_extension WHERE extname = 'vector'"
)

TABLES = """
CREATE TABLE IF NOT EXISTS namespaces (
    ns integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL, agent text NOT NULL, kind text NOT NULL,
    embedder text, dimension integer,
    ttl double precision, max_items integer, eviction text NOT NULL DEFAULT 'lru',
    size bigint NOT NULL DEFAULT 0,
    UNIQUE (tenant, agent, kind)
);
CREATE TABLE IF NOT EXISTS items (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ns integer NOT NULL REFERENCES namespaces (ns),
    id text NOT NULL UNIQUE,
    key text,
    text text NOT NULL,
    metadata jsonb NOT NULL,
    metadata_json text NOT NULL,
    dim integer,
    embedding vector,
    tsv tsvector GENERATED ALWAYS AS
        (to_tsvector('english'::regconfig, left(text, 250000))) STORED,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    accessed_at double precision NOT NULL,
    expires_at double precision,
    UNIQUE (ns, key)
);
CREATE INDEX IF NOT EXISTS items_tsv ON items USING gin (tsv);
CREATE INDEX IF NOT EXISTS items_by_use ON items (ns, accessed_at, seq);
CREATE INDEX IF NOT EXISTS items_by_age ON items (ns, created_at, seq);
CREATE INDEX IF NOT EXISTS items_by_expiry ON items (expires_at) WHERE expires_at IS NOT NULL;
"""
