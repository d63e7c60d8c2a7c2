"""The expected PostgreSQL catalog of the app schema, derived from `sql/schema.prisma` by
Prisma's documented PostgreSQL rules (not from our SQL), so the catalog test is independent of
the file it checks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from worker.settings import SQL_DIR

SCALARS = {
    "String": "text",
    "Int": "integer",
    "Boolean": "boolean",
    "DateTime": "timestamp(3) without time zone",
    "Json": "jsonb",
}


@dataclass
class Catalog:
    tables: set[str] = field(default_factory=set)
    # (table, column) -> (type, not_null, default expression or None)
    columns: dict[tuple[str, str], tuple[str, bool, str | None]] = field(default_factory=dict)
    # index name -> (table, unique, primary, method, columns)
    indexes: dict[str, tuple[str, bool, bool, str, tuple[str, ...]]] = field(default_factory=dict)
    # constraint name -> (table, kind, columns, ref table, ref columns, on update, on delete)
    constraints: dict[str, tuple] = field(default_factory=dict)
    enums: dict[str, list[str]] = field(default_factory=dict)


def _blocks(text: str, kind: str) -> dict[str, list[str]]:
    return {
        m[1]: [ln.split("//")[0].strip() for ln in m[2].splitlines() if ln.split("//")[0].strip()]
        for m in re.finditer(rf"^{kind} (\w+) \{{(.*?)^\}}", text, re.S | re.M)
    }


def _default(attrs: str, pg_type: str) -> str | None:
    m = re.search(r"@default\((.*?)\)(?=\s|$)", attrs)
    if not m:
        return None
    value = m[1]
    if value in ("cuid()", "uuid()", "cuid(2)"):
        return None  # set by Prisma's client, not the database
    if value == "now()":
        return "CURRENT_TIMESTAMP"
    if value.startswith('"'):
        return f"'{value.strip(chr(34))}'::{pg_type}"
    return value  # numbers, true/false


def expected_catalog(schema_text: str | None = None) -> Catalog:
    text = schema_text or (SQL_DIR / "schema.prisma").read_text()
    enums = _blocks(text, "enum")
    models = _blocks(text, "model")
    cat = Catalog(enums={name: labels for name, labels in enums.items()})
    for model, lines in models.items():
        cat.tables.add(model)
        cat.indexes[f"{model}_pkey"] = (model, True, True, "btree", ("id",))
        cat.constraints[f"{model}_pkey"] = (model, "p", ("id",), None, None, None, None)
        for line in lines:
            if line.startswith("@@index"):
                cols = tuple(c.strip() for c in re.search(r"\[(.*?)\]", line)[1].split(","))
                cat.indexes[f"{model}_{'_'.join(cols)}_idx"] = (model, False, False, "btree", cols)
                continue
            name, type_spec, *rest = line.split()
            attrs = " ".join(rest)
            base = type_spec.rstrip("?[]")
            is_list = type_spec.endswith("[]")
            optional = type_spec.endswith("?")
            if base in models:  # relation field
                rel = re.search(r"@relation\(fields: \[(\w+)\], references: \[(\w+)\]\)", attrs)
                if rel:
                    fk_field = rel[1]
                    fk_optional = any(
                        ln.split()[0] == fk_field and ln.split()[1].endswith("?") for ln in lines
                    )
                    cat.constraints[f"{model}_{fk_field}_fkey"] = (
                        model, "f", (fk_field,), base, (rel[2],), "c", "n" if fk_optional else "r",
                    )  # fmt: skip
                continue
            if base in enums:
                pg_type = f'"{base}"'
            elif "@db.Text" in attrs:
                pg_type = "text"
            else:
                pg_type = SCALARS[base]
            if is_list:
                pg_type += "[]"
            not_null = not optional and not is_list
            cat.columns[(model, name)] = (pg_type, not_null, _default(attrs, pg_type))
            if "@unique" in attrs:
                cat.indexes[f"{model}_{name}_key"] = (model, True, False, "btree", (name,))
    return cat
