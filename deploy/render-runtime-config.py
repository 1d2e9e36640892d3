#!/usr/bin/env python3
"""Render deploy/runtime-config.production.toml into a literal Spin runtime config.

Spin reads runtime-config files verbatim (no variable or environment expansion), so connection
strings and tokens have to be written in before the file reaches Spin. This fills `${NAME}` and
`${NAME:-default}` from the environment on non-comment lines, escapes the values for TOML, checks
the result (TOML syntax, the store types and fields Spin accepts, Redis URLs that parse, optionally
the labels a manifest uses) and prints it on stdout. It exits 1 naming every problem instead of
emitting a broken file.

A default may itself hold `${OTHER}` placeholders (one level, no default of their own): they are
filled, and required, only when NAME is unset or empty, e.g.
`${SHOP_KV_BILLING_URL:-redis://:${SHOP_REDIS_PASSWORD}@redis:6379/3}`.

SHOP_SQL_STORE picks the SQL store, as the app's variable `sql_store` does (set both to the same
value): `sqlite` (the default) keeps the template's `# @if SHOP_SQL_STORE == sqlite` block (the
labels on libSQL, SHOP_LIBSQL_* required), `postgres` its `# @if SHOP_SQL_STORE == postgres` block
(the labels as local files that stay unused, which Spin still requires; no SHOP_LIBSQL_*). Lines
outside any `# @if ... # @end` block are kept for both.

    SHOP_SQL_STORE=postgres python3 deploy/render-runtime-config.py [--template FILE]
        [--manifest spin.toml] [--spin-version X.Y.Z] > out.toml

Fields are checked against the oldest Spin the file may meet (`--spin-version`, default the
oldest one a supported target bundles; see SQLITE_FIELDS_SINCE).
"""

import argparse
import os
import re
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

# ${NAME} or ${NAME:-default}; a default may hold ${OTHER} (INNER), but not ${OTHER:-...}.
PLACEHOLDER = re.compile(
    r"\$\{([A-Z][A-Z0-9_]*)(?::-((?:[^$}]|\$(?!\{)|\$\{[A-Z][A-Z0-9_]*\})*))?\}")
INNER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
HERE = Path(__file__).resolve().parent
# `# @if SHOP_SQL_STORE == <store>` ... `# @end`: lines kept only for that store.
BLOCK_START = re.compile(r"^\s*#\s*@if\s+SHOP_SQL_STORE\s*==\s*([a-z]+)\s*$")
BLOCK_END = re.compile(r"^\s*#\s*@end\s*$")
DEFAULT_SQL_STORE = "sqlite"

# Fields Spin's parsers accept per store type: they deny unknown fields, so a field one Spin
# version knows makes an older one refuse the whole runtime config.
#
# `allow_attach_file` ([sqlite_database.*] of type "spin") exists from Spin v4.0.1 on
# (spinframework/spin, crates/sqlite/src/lib.rs, `InProcDatabase`, `#[serde(deny_unknown_fields)]`;
# absent from v3.6.3 and v4.0.0). The Spin inside the shim is what counts on SpinKube:
# containerd-shim-spin v0.24.0 bundles Spin v3.6.3, the shim runtime-class-manager v0.2.0's sample
# Shim installs (v0.23.0) bundles Spin v3.6.1, and a stored copy of the shim's Cargo.toml newer
# than v0.24.0 (the v0.25.x line, latest release v0.25.1) pins Spin v4.0.1. So by default this
# script accepts only what every one of them accepts, and the field only with
# `--spin-version 4.0.1` (or newer) for a runtime that is known to have it.
MIN_SPIN_VERSION = (3, 6, 1)
KV_FIELDS = {"redis": {"url"}, "spin": {"path"}}
SQLITE_FIELDS = {"libsql": {"url", "token"}, "spin": {"path"}}
# Fields added later: (section's type, field) -> first Spin version that accepts it.
SQLITE_FIELDS_SINCE = {("spin", "allow_attach_file"): (4, 0, 1)}


def parse_version(text: str) -> tuple:
    """`4.0.1` or `v4.0.1` as (4, 0, 1)."""
    try:
        parts = tuple(int(p) for p in text.strip().lstrip("v").split("."))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a Spin version: {text!r}") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"not a Spin version (X.Y.Z): {text!r}")
    return parts


def sqlite_fields(spin_version: tuple = MIN_SPIN_VERSION) -> dict:
    """The [sqlite_database.*] fields Spin `spin_version` accepts, per type."""
    fields = {kind: set(names) for kind, names in SQLITE_FIELDS.items()}
    for (kind, name), since in SQLITE_FIELDS_SINCE.items():
        if spin_version >= since:
            fields[kind].add(name)
    return fields


def sql_stores(template: str) -> list:
    """The stores the template has blocks for, in order."""
    found = [m.group(1) for m in map(BLOCK_START.match, template.splitlines()) if m]
    return list(dict.fromkeys(found))


def select_store(template: str, store: str) -> str:
    """The template with the blocks of `store` kept, the other stores' blocks and every marker
    line dropped (a template without blocks is returned as it is). Raises ValueError for an
    unknown store or a block without its `# @end`."""
    known = sql_stores(template)
    if not known:
        return template
    if store not in known:
        raise ValueError(f"SHOP_SQL_STORE must be one of {known}, not {store!r}")
    lines, inside = [], None
    for number, line in enumerate(template.splitlines(keepends=True), 1):
        start = BLOCK_START.match(line)
        if start or BLOCK_END.match(line):
            if bool(start) == (inside is not None):
                raise ValueError(f"template line {number}: "
                                 + ("nested @if" if start else "@end without @if"))
            inside = start.group(1) if start else None
            continue
        if inside is None or inside == store:
            lines.append(line)
    if inside is not None:
        raise ValueError(f"template: the @if SHOP_SQL_STORE == {inside} block has no @end")
    return "".join(lines)


def toml_escape(value: str) -> str:
    """Escape a value so it stays one TOML basic string."""
    out = value.replace("\\", "\\\\").replace('"', '\\"')
    return "".join(c if c >= " " else f"\\u{ord(c):04x}" for c in out)


def placeholders(template: str) -> dict:
    """Every placeholder name on a non-comment line, mapped to whether it has a default."""
    names = {}
    for line in template.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for name, default in PLACEHOLDER.findall(line):
            names[name] = names.get(name, False) or bool(default)
            for inner in INNER.findall(default):
                names.setdefault(inner, False)
    return names


def render(template: str, env: dict) -> tuple[str, list]:
    missing = []

    def lookup(match):
        value = env.get(match.group(1))
        if not value:
            missing.append(match.group(1))
            return match.group(0)
        return value

    def fill(match):
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if not value:
            if default is None:
                missing.append(name)
                return match.group(0)
            value = INNER.sub(lookup, default)
        return toml_escape(value)

    lines = []
    for line in template.splitlines(keepends=True):
        lines.append(line if line.lstrip().startswith("#") else PLACEHOLDER.sub(fill, line))
    return "".join(lines), missing


def check_tables(config: dict, section: str, allowed: dict) -> list:
    problems = []
    for label, table in config.get(section, {}).items():
        kind = table.get("type")
        if kind not in allowed:
            problems.append(f"[{section}.{label}]: type {kind!r} is not one of {sorted(allowed)}")
            continue
        unknown = set(table) - {"type"} - allowed[kind]
        if unknown:
            later = {name: since for (k, name), since in SQLITE_FIELDS_SINCE.items() if k == kind}
            hints = [f"{name} needs Spin >= {'.'.join(map(str, later[name]))} (--spin-version)"
                     for name in sorted(unknown) if section == "sqlite_database" and name in later]
            problems.append(f"[{section}.{label}]: unknown fields {sorted(unknown)}"
                            + (f"; {', '.join(hints)}" if hints else ""))
        if kind == "libsql":
            if not str(table.get("url", "")).startswith(("https://", "http://")):
                problems.append(f"[{section}.{label}]: libSQL url must start with https:// or http://")
            if "token" not in table:
                problems.append(f"[{section}.{label}]: libSQL needs a token")
        if kind == "redis":
            problems += check_redis_url(f"[{section}.{label}]", str(table.get("url", "")))
    return problems


def check_redis_url(where: str, url: str) -> list:
    """A redis:// or rediss:// URL with a host (a password in it must be URL-safe)."""
    if not url.startswith(("redis://", "rediss://")):
        return [f"{where}: Redis url must start with redis:// or rediss://"]
    try:
        parts = urlsplit(url)
        parts.port
    except ValueError as err:
        return [f"{where}: Redis url does not parse ({err}); a password must be URL-safe"]
    if not parts.hostname or parts.fragment:
        return [f"{where}: Redis url has no host or has a fragment; a password must be URL-safe"]
    return []


def check_labels(config: dict, manifest: Path) -> list:
    """Every non-default label a component asks for must be configured."""
    problems = []
    spin = tomllib.loads(manifest.read_text())
    wanted = {"key_value_store": "key_value_stores", "sqlite_database": "sqlite_databases"}
    for component_id, component in spin.get("component", {}).items():
        for section, key in wanted.items():
            for label in component.get(key, []):
                if label != "default" and label not in config.get(section, {}):
                    problems.append(f"component {component_id!r} uses {key} label {label!r}, "
                                    f"which has no [{section}.{label}]")
    return problems


def check_unused_sqlite(config: dict) -> list:
    """With sql_store = postgres the SQLite labels must not point anywhere shared: local files
    (type "spin") at absolute paths, which Spin never opens while the functions use PostgreSQL.
    Spin creates their directory at start-up and each file only on first use."""
    problems = []
    for label, table in config.get("sqlite_database", {}).items():
        if table.get("type") != "spin" or not str(table.get("path", "")).startswith("/"):
            problems.append(f"[sqlite_database.{label}]: with SHOP_SQL_STORE=postgres it must be "
                            'type = "spin" with an absolute path (an unused local file)')
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, default=HERE / "runtime-config.production.toml")
    parser.add_argument("--manifest", type=Path, help="spin.toml whose labels must all be configured")
    parser.add_argument("--spin-version", type=parse_version, default=MIN_SPIN_VERSION,
                        help="the oldest Spin that will read the file (default "
                             f"{'.'.join(map(str, MIN_SPIN_VERSION))}: fields every supported "
                             "target accepts)")
    args = parser.parse_args()

    store = os.environ.get("SHOP_SQL_STORE") or DEFAULT_SQL_STORE
    try:
        template = select_store(args.template.read_text(), store)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 1
    text, missing = render(template, dict(os.environ))
    if missing:
        print("missing environment variables: " + ", ".join(sorted(set(missing))), file=sys.stderr)
        return 1
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        print(f"rendered file is not valid TOML: {err}", file=sys.stderr)
        return 1
    problems = check_tables(config, "key_value_store", KV_FIELDS)
    problems += check_tables(config, "sqlite_database", sqlite_fields(args.spin_version))
    if args.manifest:
        problems += check_labels(config, args.manifest)
    if store == "postgres":
        problems += check_unused_sqlite(config)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
