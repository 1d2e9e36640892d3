#!/usr/bin/env python3
"""Check that deploy/ still matches spin.toml.

The deployment files repeat names that spin.toml owns: variable names, store labels, the routes
the sweep CronJob calls, the Secrets the SpinApp reads. This fails, naming each mismatch, when one
side changes without the other:

- every YAML file under deploy/spinkube parses;
- every SpinApp variable is declared in spin.toml, every required variable is given, and every
  secret variable comes from a Secret;
- the SQL store (`sql_store`, docs/adr/0009): with "postgres" the SpinApp sets `postgres_origin`
  and every `<fn>_postgres_url` a component's `postgres_url` reads (from a Secret); postgres.yaml
  has a Service named and numbered as postgres_origin's host and port, selecting a StatefulSet on
  a pinned `postgres:<major>.<minor>` image with a volumeClaimTemplate, its superuser password from
  a Secret, a pg_isready readiness probe and an init script mounted at /docker-entrypoint-initdb.d;
  the example Secret's connection strings point at that host and port, each at a database and role
  of its own that the init script creates with the password the same Secret gives; and the
  runtime config example leaves the SQLite labels as unused local files (with "sqlite": libSQL,
  never local files, which would split the data between replicas);
- the runtime config template, rendered with placeholder values for each SHOP_SQL_STORE
  (`sqlite`: libSQL; `postgres`: unused local files, no SHOP_LIBSQL_* needed), configures every
  label that a component uses, with fields Spin accepts;
- Redis requires a password: the Redis Deployment runs with `--requirepass` from a Secret, its
  redis-cli probes authenticate, `redis_address` comes from a Secret, and the runtime config's
  in-cluster Redis URLs (the template's defaults, the example Secret) carry a password;
- every function the CronJob sweeps has an HTTP route under /<function>;
- the Secrets and keys the SpinApp, CronJob, Redis and PostgreSQL read are those the example
  Secrets define;
- every Redis trigger's address comes from the `redis_address` variable the SpinApp sets, and
  each consumer subscribes on an address of its own;
- the Fermyon Cloud manifest (deploy/cloud/spin.toml) is spin.toml without the Redis trigger,
  `redis_address`, component builds and SQLite labels, with `event_delivery = "http"`, a
  required `delivery_token`, `sql_store = "postgres"` and required `postgres_origin` and
  `<fn>_postgres_url`: same components (same .wasm files), routes, key-value stores, grants and
  variables otherwise;
- deploy/README.md: the plain-machine example sets every SHOP_KV_*_URL the template reads (a
  store left out would point at the in-cluster host `redis`), and, with sql_store = postgres,
  SHOP_SQL_STORE=postgres and every variable the PostgreSQL wiring needs; step 5 starts Redis and
  PostgreSQL and waits for both before applying the SpinApp (the SpinApp CRD has no
  initContainers);
- Fermyon Cloud's limits (CLOUD_LIMITS, from https://developer.fermyon.com/cloud/faq): the Cloud
  manifest uses at most that many key-value stores and SQLite databases; the README's numbers
  (Cloud SQLite databases, requests per order on the SQL functions, outbound requests per order
  and per sweep round, orders per hour, Redis subscriptions per replica) are recomputed from
  crates/shop-kit/src/subscriptions.rs, stream.rs and the manifests, and the Cloud sweep schedule
  fits the outbound quota.

    python3 deploy/check.py [--manifest spin.toml] [--cloud-manifest deploy/cloud/spin.toml]
        [--readme deploy/README.md]

Needs PyYAML (`apt-get install python3-yaml` or `pip install pyyaml`).
"""

import argparse
import copy
import importlib.util
import re
import sys
import tomllib
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

try:
    import yaml
except ImportError:
    sys.exit("deploy/check.py needs PyYAML: apt-get install python3-yaml (or pip install pyyaml)")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# Fermyon Cloud, Starter plan (Growth: the same, except 100 key-value stores), from
# https://developer.fermyon.com/cloud/faq ("Quotas, Limitations, and Technical FAQ"):
# "SQLite database count" 1, "Key value store count" 5, "Outbound requests per hour per Spin app" 500.
CLOUD_LIMITS = {"sqlite_databases": 1, "key_value_stores": 5, "outbound_per_hour": 500}
# The Cloud manifest keeps the functions' SQL data in PostgreSQL outside Cloud (ADR 0009), so it
# needs no Cloud SQLite database; one more label than CLOUD_LIMITS allows fails the check.
# The events of an order that goes through, in order, with their sources (functions/*/src). Each
# is POSTed once to each consumer that takes its type (subscriptions.rs, docs/adr/0010).
HAPPY_PATH = (("orders", "order-created"), ("inventory", "stock-reserved"),
              ("billing", "payment-captured"), ("orders", "order-confirmed"))
# Outbound requests per order besides the deliveries: billing's charge to payment-sim.
PROVIDER_CALLS_PER_ORDER = 1
# Inbound requests per order besides the deliveries: the client's POST /orders.
CLIENT_CALLS_PER_ORDER = 1
# The SQL store values spin.toml's `sql_store` accepts, and the SHOP_SQL_STORE the runtime config
# template is rendered with for each (the same names).
SQL_STORES = ("sqlite", "postgres")
# Where the official PostgreSQL image runs its initialisation scripts.
INITDB_DIR = "/docker-entrypoint-initdb.d"


def load_renderer():
    spec = importlib.util.spec_from_file_location("render", HERE / "render-runtime-config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_objects(problems):
    objects = {}
    for path in sorted((HERE / "spinkube").rglob("*.yaml")):
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        except yaml.YAMLError as err:
            problems.append(f"{path.relative_to(HERE)}: not valid YAML: {err}")
            continue
        for doc in docs:
            objects[(doc.get("kind"), doc.get("metadata", {}).get("name"))] = doc
    return objects


def spinapp_variables(spinapp):
    return {v["name"]: v for v in spinapp["spec"].get("variables", [])}


def from_secret(variable):
    """Whether a SpinApp variable or container env entry takes its value from a Secret."""
    return "secretKeyRef" in (variable.get("valueFrom") or {}) and "value" not in variable


def check_variables(spin, spinapp, problems):
    declared = spin.get("variables", {})
    given = spinapp_variables(spinapp)
    for name in sorted(set(given) - set(declared)):
        problems.append(f"SpinApp sets variable {name!r}, which spin.toml does not declare")
    for name, decl in declared.items():
        if decl.get("required") and name not in given:
            problems.append(f"spin.toml requires variable {name!r}, which the SpinApp does not set")
        if decl.get("secret") and name in given and not from_secret(given[name]):
            problems.append(f"secret variable {name!r} must come from a Secret (secretKeyRef), "
                            "not a literal in the SpinApp")


def redis_urls_without_password(config):
    """Labels of Redis key-value stores on the in-cluster Redis whose URL has no password."""
    labels = []
    for label, table in config.get("key_value_store", {}).items():
        if table.get("type") == "redis":
            parts = urlsplit(str(table.get("url", "")))
            if parts.hostname == "redis" and not parts.password:
                labels.append(label)
    return labels


def check_runtime_config(spin, manifest, problems):
    render = load_renderer()
    full = (HERE / "runtime-config.production.toml").read_text()
    if sorted(render.sql_stores(full)) != sorted(SQL_STORES):
        problems.append(f"runtime config template: @if SHOP_SQL_STORE blocks for "
                        f"{render.sql_stores(full)}, expected one for each of {list(SQL_STORES)}")
        return
    for store in SQL_STORES:
        where = f"runtime config template (SHOP_SQL_STORE={store})"
        try:
            template = render.select_store(full, store)
        except ValueError as err:
            problems.append(f"{where}: {err}")
            continue
        # Values without a default stand in for the libSQL URLs, tokens and the Redis password a
        # deployer supplies; the key-value stores keep their in-cluster defaults.
        required = [name for name, has_default in render.placeholders(template).items()
                    if not has_default]
        if store == "postgres" and any(n.startswith("SHOP_LIBSQL_") for n in required):
            problems.append(f"{where} requires {sorted(required)}: no SHOP_LIBSQL_* with PostgreSQL")
        placeholders = {name: "https://placeholder.invalid" if name.endswith("_URL")
                        else "placeholder" for name in required}
        text, missing = render.render(template, placeholders)
        if missing:
            problems.append(f"{where}: unfilled placeholders {missing}")
            continue
        config = tomllib.loads(text)
        problems += [f"{where}: {p}" for p in
                     render.check_tables(config, "key_value_store", render.KV_FIELDS)
                     + render.check_tables(config, "sqlite_database", render.sqlite_fields())
                     + render.check_labels(config, manifest)
                     + sqlite_tables_for(store, config)]
        for label in redis_urls_without_password(config):
            problems.append(f"{where}: the default URL of [key_value_store.{label}] has no "
                            "password, but the in-cluster Redis requires one")


def sqlite_tables_for(store, config):
    """With PostgreSQL, the SQLite labels are unused local files (absolute paths); with SQLite in
    a shared deployment, they are libSQL databases: a local file per pod splits the data."""
    if store == "postgres":
        return load_renderer().check_unused_sqlite(config)
    return [f"[sqlite_database.{label}] is type {table.get('type')!r}: with sql_store = sqlite "
            "the labels must be libSQL databases shared by every replica"
            for label, table in config.get("sqlite_database", {}).items()
            if table.get("type") != "libsql"]


def check_runtime_config_example(spin, manifest, objects, spinapp, problems):
    name = spinapp["spec"].get("runtimeConfig", {}).get("loadFromSecret")
    text = objects.get(("Secret", name), {}).get("stringData", {}).get("runtime-config.toml")
    if text is None:
        return  # check_secrets names the missing example
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        problems.append(f"Secret {name!r} example: runtime-config.toml is not valid TOML: {err}")
        return
    for label in redis_urls_without_password(config):
        problems.append(f"Secret {name!r} example: [key_value_store.{label}] has no Redis password")
    render = load_renderer()
    store = sql_store_of(spin, spinapp)
    if store not in SQL_STORES:
        return  # check_postgres names it
    problems += [f"Secret {name!r} example (sql_store = {store!r}): {p}" for p in
                 render.check_labels(config, manifest) + sqlite_tables_for(store, config)]


def check_redis_auth(redis, spinapp, problems):
    """The in-cluster Redis requires a password from a Secret, and everything that talks to it
    gives one."""
    if redis is None:
        problems.append("deploy/spinkube must define Deployment 'redis'")
        return
    containers = redis["spec"]["template"]["spec"]["containers"]
    container = next((c for c in containers if c.get("name") == "redis"), containers[0])
    env = {e["name"]: e for e in container.get("env", [])}
    argv = [str(a) for a in container.get("command", []) + container.get("args", [])]
    password = None
    if "--requirepass" in argv and argv.index("--requirepass") + 1 < len(argv):
        password = argv[argv.index("--requirepass") + 1]
    if password is None:
        problems.append("the Redis Deployment does not require a password (--requirepass)")
    else:
        var = password[2:-1] if password.startswith("$(") and password.endswith(")") else None
        if var is None or var not in env or not from_secret(env[var]):
            problems.append(f"the Redis password {password!r} must be $(VAR) of an env var taken "
                            "from a Secret (secretKeyRef)")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        command = " ".join(container.get(probe, {}).get("exec", {}).get("command", []))
        if "redis-cli" in command and " -a " not in command and "REDISCLI_AUTH" not in command:
            problems.append(f"the Redis {probe} runs redis-cli without the password")
    address = spinapp_variables(spinapp).get("redis_address")
    if address is not None and not from_secret(address):
        problems.append("redis_address must come from a Secret: it carries the Redis password")


def http_routes(spin):
    routes = []
    for trigger in spin.get("trigger", {}).get("http", []):
        route = trigger.get("route")
        if isinstance(route, str):
            routes.append(route)
    return routes


def check_sweeps(spin, cronjob, problems):
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    routes = http_routes(spin)
    for function in (env.get("SWEEP_FUNCTIONS") or "").split():
        prefix = f"/{function}"
        if not any(r == f"{prefix}/..." or r.startswith(f"{prefix}/") for r in routes):
            problems.append(f"CronJob sweeps {function!r}, but spin.toml has no route under {prefix}/")


def secret_refs(obj):
    """Yields (secret name, key) for every secretKeyRef in an object."""
    if isinstance(obj, dict):
        ref = obj.get("secretKeyRef")
        if isinstance(ref, dict):
            yield ref.get("name"), ref.get("key")
        for value in obj.values():
            yield from secret_refs(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from secret_refs(value)


def check_secrets(objects, spinapp, problems):
    """Every Secret key an object under deploy/spinkube reads (the SpinApp, the CronJob, Redis,
    PostgreSQL, ...) is in the example of that Secret."""
    secrets = {name: set(doc.get("stringData", {})) | set(doc.get("data", {}))
               for (kind, name), doc in objects.items() if kind == "Secret"}
    wanted = [ref for (kind, _), doc in sorted(objects.items(), key=str) if kind != "Secret"
              for ref in secret_refs(doc)]
    runtime_secret = spinapp["spec"].get("runtimeConfig", {}).get("loadFromSecret")
    if runtime_secret:
        wanted.append((runtime_secret, "runtime-config.toml"))
    for name, key in dict.fromkeys(wanted):
        if name not in secrets:
            problems.append(f"Secret {name!r} is read but has no example under spinkube/secrets/")
        elif key not in secrets[name]:
            problems.append(f"Secret {name!r} is read for key {key!r}, which its example lacks")


def sql_store_of(spin, spinapp):
    """The `sql_store` the SpinApp runs with: its value, or spin.toml's default."""
    given = spinapp_variables(spinapp).get("sql_store")
    if given is not None and "value" in given:
        return str(given["value"]).strip()
    return str(spin.get("variables", {}).get("sql_store", {}).get("default", "sqlite")).strip()


def postgres_url_variables(manifest):
    """{component: app variable} for every component whose `postgres_url` reads one."""
    found = {}
    for component_id, component in manifest.get("component", {}).items():
        template = component.get("variables", {}).get("postgres_url")
        match = re.fullmatch(r"\{\{\s*([a-z0-9_]+)\s*\}\}", str(template or ""))
        if match:
            found[component_id] = match.group(1)
    return found


def parse_pg_connection(text):
    """host, port, user, password, dbname and sslmode of a `key=value ...` or postgres://
    connection string (None when it is neither). Values hold no spaces or quotes (README)."""
    text = str(text).strip()
    if text.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(text)
        try:
            port = parts.port or 5432
        except ValueError:
            return None
        return {"host": parts.hostname, "port": port, "user": unquote(parts.username or ""),
                "password": unquote(parts.password or ""), "dbname": parts.path.lstrip("/"),
                "sslmode": dict(parse_qsl(parts.query)).get("sslmode")}
    fields = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep:
            return None
        fields[key] = value
    if not fields.get("port", "5432").isdigit():
        return None
    return {"host": fields.get("host"), "port": int(fields.get("port", "5432")),
            "user": fields.get("user"), "password": fields.get("password"),
            "dbname": fields.get("dbname"), "sslmode": fields.get("sslmode")}


def container_named(workload, name):
    containers = workload["spec"]["template"]["spec"].get("containers", [])
    return next((c for c in containers if c.get("name") == name), containers[0] if containers else {})


def secret_value(objects, ref):
    doc = objects.get(("Secret", (ref or {}).get("name")), {})
    return {**doc.get("data", {}), **doc.get("stringData", {})}.get((ref or {}).get("key"))


def check_postgres_statefulset(statefulset, objects, problems):
    """The PostgreSQL StatefulSet: pinned image, data on a claim, superuser password from a
    Secret, pg_isready readiness, init scripts mounted. Returns {(role, database): env var of its
    password} from the init scripts, and the container's env."""
    name = statefulset["metadata"]["name"]
    container = container_named(statefulset, "postgres")
    env = {e["name"]: e for e in container.get("env", [])}
    image = str(container.get("image", ""))
    pinned = re.fullmatch(r"postgres:(\d+)\.\d+(-[a-z0-9.]+)?", image)
    if not pinned:
        problems.append(f"StatefulSet {name!r}: image {image!r} must be the official postgres image "
                        "pinned to a major.minor tag (postgres:<major>.<minor>[-variant])")
    claims = {t["metadata"]["name"] for t in statefulset["spec"].get("volumeClaimTemplates", [])}
    mounts = container.get("volumeMounts", [])
    data = [m["mountPath"].rstrip("/") for m in mounts if m.get("name") in claims]
    # Where the image keeps its data: PGDATA, or the image's default (moved in 18).
    if "PGDATA" in env:
        pgdata = str(env["PGDATA"].get("value", ""))
    elif pinned and int(pinned.group(1)) >= 18:
        pgdata = f"/var/lib/postgresql/{pinned.group(1)}/docker"
    else:
        pgdata = "/var/lib/postgresql/data"
    if not any(pgdata == path or pgdata.startswith(path + "/") for path in data):
        problems.append(f"StatefulSet {name!r}: PGDATA {pgdata} is on no volumeClaimTemplate's "
                        f"mount ({data or 'none'}): the data would die with the pod")
    if "POSTGRES_PASSWORD" not in env or not from_secret(env["POSTGRES_PASSWORD"]):
        problems.append(f"StatefulSet {name!r}: POSTGRES_PASSWORD must come from a Secret")
    readiness = " ".join(container.get("readinessProbe", {}).get("exec", {}).get("command", []))
    if "pg_isready" not in readiness:
        problems.append(f"StatefulSet {name!r}: the readiness probe must run pg_isready")
    volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"].get("volumes", [])}
    scripts = []
    for mount in mounts:
        if mount.get("mountPath", "").rstrip("/") == INITDB_DIR:
            config_map = volumes.get(mount.get("name"), {}).get("configMap", {}).get("name")
            scripts += list(objects.get(("ConfigMap", config_map), {}).get("data", {}).values())
    if not scripts:
        problems.append(f"StatefulSet {name!r}: no ConfigMap with init scripts at {INITDB_DIR}")
    created = {}
    for script in scripts:
        for role, database, var in re.findall(
                r'^\s*create_database\s+(\S+)\s+(\S+)\s+"\$\{?(\w+)\}?"', script, re.M):
            created[(role, database)] = var
        if "create_database" in script and "REVOKE ALL ON DATABASE" not in script:
            problems.append(f"StatefulSet {name!r}: the init script does not revoke PUBLIC's "
                            "access to the functions' databases")
    return created, env


def check_postgres(spin, objects, spinapp, problems):
    """With sql_store = postgres: the SpinApp's PostgreSQL variables, postgres.yaml's Service and
    StatefulSet, and the example Secret's connection strings agree (docs/adr/0009)."""
    store = sql_store_of(spin, spinapp)
    if store not in SQL_STORES:
        problems.append(f"SpinApp sets sql_store {store!r}, not one of {list(SQL_STORES)}")
        return
    if store != "postgres":
        return
    given = spinapp_variables(spinapp)
    urls = postgres_url_variables(spin)
    if not urls:
        problems.append("SpinApp sets sql_store = postgres, but no component of spin.toml reads "
                        "a postgres_url")
    for component, var in sorted(urls.items()):
        if var not in given:
            problems.append(f"SpinApp sets sql_store = postgres but not {var!r}, {component}'s "
                            "connection string")
        elif not from_secret(given[var]):
            problems.append(f"{var!r} must come from a Secret: it carries a password")
    origin = str(given.get("postgres_origin", {}).get("value", ""))
    parts = urlsplit(origin)
    try:
        host, port = parts.hostname, parts.port or 5432
    except ValueError:
        host = None
    if parts.scheme != "postgres" or not host or parts.path not in ("", "/"):
        problems.append(f"SpinApp must set postgres_origin to postgres://host:port (the "
                        f"components' allowed outbound host), not {origin!r}")
        return
    for component_id, component in spin.get("component", {}).items():
        hosts = [h.replace(" ", "") for h in component.get("allowed_outbound_hosts", [])]
        if component_id in urls and "{{postgres_origin}}" not in hosts:
            problems.append(f"spin.toml: component {component_id!r} reads a postgres_url but its "
                            "allowed_outbound_hosts lacks {{ postgres_origin }}")
    service = objects.get(("Service", host))
    if service is None:
        problems.append(f"postgres_origin's host {host!r} is no Service under deploy/spinkube "
                        "(postgres.yaml)")
        return
    if port not in [p.get("port") for p in service["spec"].get("ports", [])]:
        problems.append(f"Service {host!r} has no port {port} (postgres_origin {origin!r})")
    selector = service["spec"].get("selector") or {}
    statefulset = next((doc for (kind, _), doc in sorted(objects.items(), key=str)
                        if kind == "StatefulSet" and selector and selector.items()
                        <= doc["spec"]["template"]["metadata"].get("labels", {}).items()), None)
    if statefulset is None:
        problems.append(f"Service {host!r} selects no StatefulSet under deploy/spinkube")
        return
    created, env = check_postgres_statefulset(statefulset, objects, problems)
    owners = {}
    for component, var in sorted(urls.items()):
        ref = given.get(var, {}).get("valueFrom", {}).get("secretKeyRef")
        text = secret_value(objects, ref)
        if text is None:
            continue  # not from a Secret (above), or check_secrets names the missing key
        where = f"Secret {ref.get('name')!r} example, key {ref.get('key')!r} ({var})"
        conn = parse_pg_connection(text)
        if conn is None:
            problems.append(f"{where}: not a PostgreSQL connection string")
            continue
        if (conn["host"], conn["port"]) != (host, port):
            problems.append(f"{where}: points at {conn['host']}:{conn['port']}, but postgres_origin "
                            f"lets through {host}:{port} only")
        for field in ("user", "dbname"):
            other = owners.setdefault((field, conn[field]), var)
            if other != var:
                problems.append(f"{where}: {field} {conn[field]!r} is {other}'s too: one database "
                                "and one role per function, never shared")
        var_of_password = created.get((conn["user"], conn["dbname"]))
        if var_of_password is None:
            problems.append(f"{where}: the PostgreSQL init script creates no role {conn['user']!r} "
                            f"owning a database {conn['dbname']!r}")
            continue
        password_env = env.get(var_of_password)
        if password_env is None or not from_secret(password_env):
            problems.append(f"StatefulSet {statefulset['metadata']['name']!r}: {var_of_password} "
                            "(a role's password for the init script) must come from a Secret")
            continue
        password_ref = password_env["valueFrom"]["secretKeyRef"]
        password = secret_value(objects, password_ref)
        if password is not None and password != conn["password"]:
            problems.append(f"{where}: its password is not the example's "
                            f"{password_ref.get('key')!r}, with which the init script creates "
                            f"role {conn['user']!r}")


def check_redis_address(spin, spinapp, problems):
    """Every Redis trigger subscribes on redis_address, on an address of its component's own."""
    default = spin.get("application", {}).get("trigger", {}).get("redis", {}).get("address")
    given = {v["name"] for v in spinapp["spec"].get("variables", [])}
    addresses = {}
    for trigger in spin.get("trigger", {}).get("redis", []):
        component, address = trigger["component"], trigger.get("address", default)
        if address is None:
            problems.append(f"the Redis trigger of {component!r} has no address")
        elif "redis_address" not in address.replace(" ", ""):
            problems.append(f"the Redis trigger address {address!r} does not use {{{{ redis_address }}}}")
        else:
            addresses.setdefault(component, set()).add(address)
    if addresses and "redis_address" not in given:
        problems.append("the Redis trigger uses redis_address, which the SpinApp does not set")
    # Subscriptions of a consumer's own (ADR 0006, decision 2): one address per stream and one
    # for its wake, and no address shared by two components.
    owners = {}
    for component, own in sorted(addresses.items()):
        if any(f"consumer={component}&" not in address for address in own):
            problems.append(f"the Redis triggers of {component!r} use addresses not its own: {sorted(own)}")
        for address in own:
            owners.setdefault(address, []).append(component)
    for address, components in owners.items():
        if len(components) > 1:
            problems.append(f"{components} share the Redis address {address!r}, so one subscription")


def cloud_expected(spin, manifest_dir):
    """spin.toml as the Cloud manifest must read: HTTP delivery, no Redis, no builds, and the SQL
    functions on PostgreSQL outside Cloud (no SQLite label: Cloud allows one database per
    account, the shop needs one per function), with the connection strings and origin required."""
    cloud = copy.deepcopy(spin)
    cloud.get("application", {}).get("trigger", {}).pop("redis", None)
    if not cloud.get("application", {}).get("trigger", True):
        del cloud["application"]["trigger"]
    cloud.get("trigger", {}).pop("redis", None)
    variables = cloud.setdefault("variables", {})
    variables.pop("redis_address", None)
    variables["event_delivery"] = {"default": "http"}
    variables["delivery_token"] = {"required": True, "secret": True}
    variables["sql_store"] = {"default": "postgres"}
    for var in postgres_url_variables(spin).values():
        variables[var] = {"required": True, "secret": True}
    variables["postgres_origin"] = {"required": True}
    for component in cloud.get("component", {}).values():
        component.pop("build", None)
        component.pop("sqlite_databases", None)
        component.get("variables", {}).pop("redis_address", None)
        if "allowed_outbound_hosts" in component:
            component["allowed_outbound_hosts"] = [
                h for h in component["allowed_outbound_hosts"] if "redis_address" not in h]
        if "source" in component:
            # A source is relative to its manifest: compare the files, not the spelling.
            component["source"] = str((manifest_dir / component["source"]).resolve())
    return cloud


def check_cloud(spin, manifest, cloud_manifest, problems):
    cloud = tomllib.loads(cloud_manifest.read_text())
    for component in cloud.get("component", {}).values():
        if "source" in component:
            component["source"] = str((cloud_manifest.parent / component["source"]).resolve())
    expected = cloud_expected(spin, manifest.parent)
    name = cloud_manifest.name
    for section in sorted(set(expected) | set(cloud)):
        want, have = expected.get(section), cloud.get(section)
        if section == "component":
            for comp in sorted(set(want or {}) | set(have or {})):
                if (want or {}).get(comp) != (have or {}).get(comp):
                    problems.append(f"cloud {name}: component {comp!r} is {(have or {}).get(comp)}, "
                                    f"expected {(want or {}).get(comp)}")
        elif section == "variables":
            for var in sorted(set(want or {}) | set(have or {})):
                if (want or {}).get(var) != (have or {}).get(var):
                    problems.append(f"cloud {name}: variable {var!r} is {(have or {}).get(var)}, "
                                    f"expected {(want or {}).get(var)}")
        elif want != have:
            problems.append(f"cloud {name}: [{section}] is {have}, expected {want}")


def component_labels(manifest, key):
    return {label for c in manifest.get("component", {}).values() for label in c.get(key, [])}


def subscriptions():
    """(source, consumer, types) of crates/shop-kit/src/subscriptions.rs, and PARTITIONS."""
    text = (ROOT / "crates/shop-kit/src/subscriptions.rs").read_text()
    table = text.split("pub const SUBSCRIPTIONS", 1)[1].split("];", 1)[0]
    pairs = [(source, consumer, re.findall(r'"([a-z-]+)"', types)) for source, consumer, types in
             re.findall(r'sub\(\s*"([a-z_-]+)",\s*"([a-z_-]+)",\s*&\[([^\]]*)\]', table)]
    found = re.search(r"pub const PARTITIONS: i64 = (\d+);",
                      (ROOT / "crates/shop-kit/src/stream.rs").read_text())
    return pairs, int(found.group(1)) if found else None


def section(text, heading):
    """The README text from `heading` to the next heading of the same or a higher level."""
    start = text.find(heading)
    if start < 0:
        return None
    level = len(heading.split(" ", 1)[0])
    lines, fenced = [], False
    for line in text[start + len(heading):].splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,%d} " % level, line):
            break
        lines.append(line)
    return "".join(lines)


def check_readme(spin, readme, problems):
    """The README's plain-machine example and deploy order."""
    text = readme.read_text()
    render = load_renderer()
    wanted = sorted(n for n in render.placeholders(
        (HERE / "runtime-config.production.toml").read_text())
        if re.fullmatch(r"SHOP_KV_[A-Z_]+_URL", n))
    plain = section(text, "### On a plain machine with the Spin CLI")
    if plain is None:
        problems.append("README: no section '### On a plain machine with the Spin CLI'")
    else:
        given = set(re.findall(r"\b(SHOP_KV_[A-Z_]+_URL)=", plain))
        for name in wanted:
            if name not in given:
                problems.append(f"README plain-machine example does not set {name}: its store "
                                "would point at the in-cluster host `redis`")
        # The plain machine runs the SQL functions on PostgreSQL: the app's variables and the
        # runtime config's SHOP_SQL_STORE must say so together.
        wanted_vars = ["SPIN_VARIABLE_SQL_STORE=postgres", "SHOP_SQL_STORE=postgres",
                       "SPIN_VARIABLE_POSTGRES_ORIGIN="]
        wanted_vars += [f"SPIN_VARIABLE_{var.upper()}="
                        for var in sorted(postgres_url_variables(spin).values())]
        for name in wanted_vars:
            if not re.search(r"\b" + re.escape(name), plain):
                problems.append(f"README plain-machine example does not set {name.rstrip('=')}: "
                                "it runs the SQL functions on PostgreSQL")
    deploy = section(text, "## 5. Deploy")
    if deploy is None:
        problems.append("README: no section '## 5. Deploy'")
        return
    for ready in ("kubectl rollout status deployment/redis",
                  "kubectl rollout status statefulset/postgres"):
        steps = [ready, "kubectl apply -f deploy/spinkube/\n"]
        at = [deploy.find(step) for step in steps]
        if any(a < 0 for a in at) or at != sorted(at):
            problems.append(f"README step 5 must wait for `{ready}` before `kubectl apply -f "
                            "deploy/spinkube/`: the app's Redis trigger exits while Redis is not "
                            "ready, and its SQL requests fail while PostgreSQL is not")
    for manifest in ("redis.yaml", "postgres.yaml"):
        applied = re.search(r"kubectl apply[^\n]* -f deploy/spinkube/" + re.escape(manifest), deploy)
        waited = deploy.find("kubectl rollout status")
        if not applied or (waited >= 0 and applied.start() > waited):
            problems.append(f"README step 5 must apply deploy/spinkube/{manifest} before waiting "
                            "for it")


def cron_runs_per_hour(minute_field):
    if minute_field == "*":
        return 60
    if minute_field.startswith("*/") and minute_field[2:].isdigit():
        return -(-60 // int(minute_field[2:]))
    if re.fullmatch(r"\d+(,\d+)*", minute_field):
        return len(minute_field.split(","))
    return None


def check_cloud_limits(spin, cloud_manifest, readme, problems, notes):
    cloud = tomllib.loads(cloud_manifest.read_text())
    text = readme.read_text()
    name = cloud_manifest.name
    kv = component_labels(cloud, "key_value_stores") - {"default"}
    if len(kv) > CLOUD_LIMITS["key_value_stores"]:
        problems.append(f"cloud {name}: {len(kv)} key-value stores, Fermyon Cloud allows "
                        f"{CLOUD_LIMITS['key_value_stores']}")
    sqlite = component_labels(cloud, "sqlite_databases") - {"default"}
    if len(sqlite) > CLOUD_LIMITS["sqlite_databases"]:
        problems.append(f"cloud {name}: {len(sqlite)} SQLite databases {sorted(sqlite)}, Fermyon "
                        f"Cloud allows {CLOUD_LIMITS['sqlite_databases']} per account")
    # The functions that keep SQL data (a SQLite label or a postgres_url) must each have one,
    # and no two may share it: one database per function (ADR 0002, ADR 0009).
    sql_functions = set(postgres_url_variables(cloud))
    for component_id, component in cloud.get("component", {}).items():
        labels = set(component.get("sqlite_databases", [])) - {"default"}
        if labels:
            sql_functions.add(component_id)
        if component_id in postgres_url_variables(cloud) and labels:
            problems.append(f"cloud {name}: component {component_id!r} has both a SQLite label "
                            "and a postgres_url: pick one store")

    pairs, partitions = subscriptions()
    if not pairs or partitions is None:
        problems.append("could not read SUBSCRIPTIONS or PARTITIONS from crates/shop-kit/src")
        return
    deliveries = [consumer for source, kind in HAPPY_PATH
                  for s, consumer, types in pairs if s == source and kind in types]
    per_order = len(deliveries) + PROVIDER_CALLS_PER_ORDER
    # Requests per order that the SQL functions handle, each reading and writing its database.
    sql_per_order = CLIENT_CALLS_PER_ORDER + sum(1 for c in deliveries if c in sql_functions)
    per_sweep = len(pairs) * partitions
    addresses = {t.get("address") for t in spin.get("trigger", {}).get("redis", [])}
    limits = section(text, "## Each platform within its limits") or ""
    fermyon = section(text, "## Fermyon Cloud") or ""
    cron = re.search(r"^\s*(\S+) \S+ \S+ \S+ \S+ for fn in", fermyon, re.M)
    runs = cron_runs_per_hour(cron.group(1)) if cron else None
    if runs is None:
        problems.append("README's Fermyon Cloud section has no crontab line for the sweeps")
        return
    sweeps = runs * per_sweep
    if sweeps >= CLOUD_LIMITS["outbound_per_hour"]:
        problems.append(f"README: the Cloud sweep runs {runs} times an hour, {sweeps} outbound "
                        f"requests, over Fermyon Cloud's {CLOUD_LIMITS['outbound_per_hour']}")
    claims = [f"**{per_order} per order**", f"**{per_sweep} per sweep round**",
              f"{len(addresses)} per replica", f"**{len(sqlite)} Cloud SQLite databases**",
              f"**{sql_per_order} requests per order**"]
    if sweeps < CLOUD_LIMITS["outbound_per_hour"]:
        orders = (CLOUD_LIMITS["outbound_per_hour"] - sweeps) // per_order
        claims.append(f"**at most {orders} orders per hour**")
    for claim in claims:
        if claim not in limits:
            problems.append(f"README 'Each platform within its limits' should say {claim!r} "
                            "(recomputed from subscriptions.rs, stream.rs, the manifests and "
                            "the Cloud crontab)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=HERE.parent / "spin.toml")
    parser.add_argument("--cloud-manifest", type=Path, default=HERE / "cloud" / "spin.toml")
    parser.add_argument("--readme", type=Path, default=HERE / "README.md")
    args = parser.parse_args()
    spin = tomllib.loads(args.manifest.read_text())

    problems, notes = [], []
    objects = load_objects(problems)
    spinapp = objects.get(("SpinApp", "shop"))
    cronjob = objects.get(("CronJob", "shop-sweep"))
    redis = objects.get(("Deployment", "redis"))
    if spinapp is None or cronjob is None:
        problems.append("deploy/spinkube must define SpinApp 'shop' and CronJob 'shop-sweep'")
    else:
        check_variables(spin, spinapp, problems)
        check_sweeps(spin, cronjob, problems)
        check_secrets(objects, spinapp, problems)
        check_redis_address(spin, spinapp, problems)
        check_redis_auth(redis, spinapp, problems)
        check_postgres(spin, objects, spinapp, problems)
        check_runtime_config_example(spin, args.manifest, objects, spinapp, problems)
    check_runtime_config(spin, args.manifest, problems)
    check_cloud(spin, args.manifest, args.cloud_manifest, problems)
    check_readme(spin, args.readme, problems)
    check_cloud_limits(spin, args.cloud_manifest, args.readme, problems, notes)

    for note in notes:
        print(note)
    if problems:
        print("deploy/ does not match spin.toml:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"deploy/ matches {args.manifest.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
