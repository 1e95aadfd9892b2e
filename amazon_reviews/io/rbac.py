"""Role-based access in PostgreSQL: four group roles, their grants, and an audit against them.

| role | amazon (source) | amazon_gold (served gold) |
|---|---|---|
| amazon_analyst | - | read |
| amazon_scientist | read | read |
| amazon_engineer | read | read, write, create |
| amazon_admin | owner | owner |

The roles are NOLOGIN groups: people and services log in as their own users, made members of
one group (`GRANT amazon_analyst TO alice`). `apply` is idempotent; `audit` compares the
privileges PostgreSQL reports (`has_schema_privilege`, `has_table_privilege`) with this matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

from amazon_reviews.contract import GOLD_SCHEMA, SOURCE_SCHEMA, quote_ident

ANALYST, SCIENTIST, ENGINEER, ADMIN = (
    "amazon_analyst",
    "amazon_scientist",
    "amazon_engineer",
    "amazon_admin",
)
ROLES = (ANALYST, SCIENTIST, ENGINEER, ADMIN)
READ = ("SELECT",)
WRITE = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
TABLE_PRIVILEGES = WRITE

# role -> schema -> (schema privileges, table privileges)
EXPECTED: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    ANALYST: {SOURCE_SCHEMA: ((), ()), GOLD_SCHEMA: (("USAGE",), READ)},
    SCIENTIST: {SOURCE_SCHEMA: (("USAGE",), READ), GOLD_SCHEMA: (("USAGE",), READ)},
    ENGINEER: {SOURCE_SCHEMA: (("USAGE",), READ), GOLD_SCHEMA: (("USAGE", "CREATE"), WRITE)},
    ADMIN: {SOURCE_SCHEMA: (("USAGE", "CREATE"), WRITE), GOLD_SCHEMA: (("USAGE", "CREATE"), WRITE)},
}


def apply_statements() -> list[str]:
    """The idempotent statements that create the roles and set exactly the expected grants."""
    out = []
    for role in ROLES:
        out.append(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "
            f"'{role}') THEN CREATE ROLE {quote_ident(role)} NOLOGIN; END IF; END $$"
        )
    # A non-superuser (Neon's database owner) may only give a schema to a role it is a member
    # of; with CREATEROLE it holds ADMIN OPTION on the roles it created, so it can join.
    out.append(f"GRANT {quote_ident(ADMIN)} TO CURRENT_USER")
    for schema in (SOURCE_SCHEMA, GOLD_SCHEMA):
        s = quote_ident(schema)
        out.append(f"CREATE SCHEMA IF NOT EXISTS {s}")
        out.append(f"ALTER SCHEMA {s} OWNER TO {quote_ident(ADMIN)}")
        for role in ROLES:
            r = quote_ident(role)
            if role != ADMIN:  # the owner's own privileges are never revoked
                out.append(f"REVOKE ALL ON SCHEMA {s} FROM {r}")
                out.append(f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {r}")
            schema_privs, table_privs = EXPECTED[role][schema]
            if schema_privs:
                out.append(f"GRANT {', '.join(schema_privs)} ON SCHEMA {s} TO {r}")
            if table_privs:
                out.append(f"GRANT {', '.join(table_privs)} ON ALL TABLES IN SCHEMA {s} TO {r}")
                # Tables created later (the gold swap, a re-run init-db) get the same grants.
                out.append(
                    f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT {', '.join(table_privs)} "
                    f"ON TABLES TO {r}"
                )
    return out


def apply(cur) -> int:
    """Create roles and grants; return the number of statements run."""
    statements = apply_statements()
    for statement in statements:
        cur.execute(statement)
    return len(statements)


@dataclass(frozen=True)
class Drift:
    role: str
    obj: str
    privilege: str
    expected: bool
    actual: bool

    def __str__(self) -> str:
        want = "granted" if self.expected else "not granted"
        have = "granted" if self.actual else "not granted"
        return f"{self.role}: {self.privilege} on {self.obj} should be {want}, is {have}"


def audit(cur) -> tuple[list[dict], list[Drift]]:
    """Every (role, object, privilege) with expected and actual; and the drifts among them."""
    rows: list[dict] = []
    drifts: list[Drift] = []
    cur.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(ROLES),))
    present = {r[0] for r in cur.fetchall()}
    for role in ROLES:
        if role not in present:
            drifts.append(Drift(role, "(role)", "EXISTS", True, False))
            continue
        for schema, (schema_privs, table_privs) in EXPECTED[role].items():
            cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
            if cur.fetchone() is None:
                continue
            for priv in ("USAGE", "CREATE"):
                cur.execute("SELECT has_schema_privilege(%s, %s, %s)", (role, schema, priv))
                actual = bool(cur.fetchone()[0])
                _record(rows, drifts, role, f"schema {schema}", priv, priv in schema_privs, actual)
            cur.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,)
            )
            for (table,) in cur.fetchall():
                qualified = f"{quote_ident(schema)}.{quote_ident(table)}"
                for priv in TABLE_PRIVILEGES:
                    cur.execute("SELECT has_table_privilege(%s, %s, %s)", (role, qualified, priv))
                    actual = bool(cur.fetchone()[0])
                    _record(
                        rows, drifts, role, f"{schema}.{table}", priv, priv in table_privs, actual
                    )
    return rows, drifts


def _record(
    rows: list[dict],
    drifts: list[Drift],
    role: str,
    obj: str,
    priv: str,
    expected: bool,
    actual: bool,
) -> None:
    rows.append(
        {
            "role": role,
            "object": obj,
            "privilege": priv,
            "expected": "yes" if expected else "no",
            "actual": "yes" if actual else "no",
            "status": "ok" if expected == actual else "DRIFT",
        }
    )
    if expected != actual:
        drifts.append(Drift(role, obj, priv, expected, actual))
