#!/usr/bin/env python3
"""Check that deploy/ still matches spin.toml.

The deployment files repeat names that spin.toml owns: variable names, store labels, the routes
the sweep CronJob calls, the Secrets the SpinApp reads. This fails, naming each mismatch, when one
side changes without the other:

- every YAML file under deploy/spinkube parses;
- every SpinApp variable is declared in spin.toml, every required variable is given, and every
  secret variable comes from a Secret;
- the runtime config template, rendered with placeholder values, configures every label that a
  component uses, with fields Spin accepts;
- Redis requires a password: the Redis Deployment runs with `--requirepass` from a Secret, its
  redis-cli probes authenticate, `redis_address` comes from a Secret, and the runtime config's
  in-cluster Redis URLs (the template's defaults, the example Secret) carry a password;
- every function the CronJob sweeps has an HTTP route under /<function>;
- the Secrets and keys the SpinApp, CronJob and Redis read are those the example Secrets define;
- every Redis trigger's address comes from the `redis_address` variable the SpinApp sets, and
  each consumer subscribes on an address of its own;
- the Fermyon Cloud manifest (deploy/cloud/spin.toml) is spin.toml without the Redis trigger,
  `redis_address` and component builds, with `event_delivery = "http"` and a required
  `delivery_token`: same components (same .wasm files), routes, stores, grants and variables;
- deploy/README.md: the plain-machine example sets every SHOP_KV_*_URL the template reads (a
  store left out would point at the in-cluster host `redis`), and step 5 starts Redis and waits
  for it before applying the SpinApp (the SpinApp CRD has no initContainers);
- Fermyon Cloud's limits (CLOUD_LIMITS, from https://developer.fermyon.com/cloud/faq): the Cloud
  manifest uses at most that many key-value stores; its SQLite databases exceed the Cloud's one
  per account, which is reported as the known limitation the README documents (it fails only if
  the count grows past KNOWN_CLOUD_SQLITE_DATABASES or the README stops saying so); the README's
  outbound-request numbers (per order, per sweep round, orders per hour, Redis subscriptions per
  replica) are recomputed from crates/shop-kit/src/subscriptions.rs, stream.rs and spin.toml, and
  the Cloud sweep schedule fits the outbound quota.

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
from urllib.parse import urlsplit

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
# The Cloud manifest needs 3 SQLite databases (one per function, ADR 0002): more than Cloud allows.
# A known, documented limitation (deploy/README.md, "Each platform within its limits"), reported
# rather than failed, as long as it stays at this number.
KNOWN_CLOUD_SQLITE_DATABASES = 3
# Sources of the events of an order that goes through, in order: order-created, stock-reserved,
# payment-captured, order-confirmed (functions/*/src). Each is POSTed once per subscriber.
HAPPY_PATH_SOURCES = ("orders", "inventory", "billing", "orders")
# Outbound requests per order besides the deliveries: billing's charge to payment-sim.
PROVIDER_CALLS_PER_ORDER = 1


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
    template = (HERE / "runtime-config.production.toml").read_text()
    # Values without a default stand in for the libSQL URLs, tokens and the Redis password a
    # deployer supplies; the key-value stores keep their in-cluster defaults.
    placeholders = {name: "https://placeholder.invalid" if name.endswith("_URL") else "placeholder"
                    for name, has_default in render.placeholders(template).items()
                    if not has_default}
    text, missing = render.render(template, placeholders)
    if missing:
        problems.append(f"runtime config template: unfilled placeholders {missing}")
        return
    config = tomllib.loads(text)
    problems += render.check_tables(config, "key_value_store", render.KV_FIELDS)
    problems += render.check_tables(config, "sqlite_database", render.sqlite_fields())
    problems += render.check_labels(config, manifest)
    for label in redis_urls_without_password(config):
        problems.append(f"runtime config template: the default URL of [key_value_store.{label}] "
                        "has no password, but the in-cluster Redis requires one")


def check_runtime_config_example(objects, spinapp, problems):
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


def check_secrets(objects, spinapp, cronjob, redis, problems):
    secrets = {name: set(doc.get("stringData", {})) | set(doc.get("data", {}))
               for (kind, name), doc in objects.items() if kind == "Secret"}
    wanted = list(secret_refs(spinapp)) + list(secret_refs(cronjob)) + list(secret_refs(redis))
    runtime_secret = spinapp["spec"].get("runtimeConfig", {}).get("loadFromSecret")
    if runtime_secret:
        wanted.append((runtime_secret, "runtime-config.toml"))
    for name, key in dict.fromkeys(wanted):
        if name not in secrets:
            problems.append(f"Secret {name!r} is read but has no example under spinkube/secrets/")
        elif key not in secrets[name]:
            problems.append(f"Secret {name!r} is read for key {key!r}, which its example lacks")


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
    """spin.toml as the Cloud manifest must read: HTTP delivery, no Redis, no builds."""
    cloud = copy.deepcopy(spin)
    cloud.get("application", {}).get("trigger", {}).pop("redis", None)
    if not cloud.get("application", {}).get("trigger", True):
        del cloud["application"]["trigger"]
    cloud.get("trigger", {}).pop("redis", None)
    variables = cloud.setdefault("variables", {})
    variables.pop("redis_address", None)
    variables["event_delivery"] = {"default": "http"}
    variables["delivery_token"] = {"required": True, "secret": True}
    for component in cloud.get("component", {}).values():
        component.pop("build", None)
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
    """(source, consumer) pairs of crates/shop-kit/src/subscriptions.rs, and PARTITIONS."""
    text = (ROOT / "crates/shop-kit/src/subscriptions.rs").read_text()
    table = text.split("SUBSCRIPTIONS", 1)[1].split("];", 1)[0]
    pairs = re.findall(r'\(\s*"([a-z_-]+)"\s*,\s*"([a-z_-]+)"\s*\)', table)
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


def check_readme(readme, problems):
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
    deploy = section(text, "## 5. Deploy")
    if deploy is None:
        problems.append("README: no section '## 5. Deploy'")
        return
    steps = ["kubectl apply -f deploy/spinkube/redis.yaml", "kubectl rollout status deployment/redis",
             "kubectl apply -f deploy/spinkube/\n"]
    at = [deploy.find(step) for step in steps]
    if any(a < 0 for a in at) or at != sorted(at):
        problems.append("README step 5 must apply redis.yaml and wait for `kubectl rollout status "
                        "deployment/redis` before `kubectl apply -f deploy/spinkube/`: the app's "
                        "Redis trigger exits while Redis is not ready")


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
    sqlite = component_labels(cloud, "sqlite_databases")
    if len(sqlite) > CLOUD_LIMITS["sqlite_databases"]:
        documented = "does not fit" in text and "known limitation" in text.lower()
        if len(sqlite) > KNOWN_CLOUD_SQLITE_DATABASES or not documented:
            problems.append(f"cloud {name}: {len(sqlite)} SQLite databases {sorted(sqlite)}, "
                            f"Fermyon Cloud allows {CLOUD_LIMITS['sqlite_databases']} per account "
                            f"(known and documented up to {KNOWN_CLOUD_SQLITE_DATABASES})")
        else:
            notes.append(f"known limitation: cloud {name} uses {len(sqlite)} SQLite databases, "
                         f"Fermyon Cloud allows {CLOUD_LIMITS['sqlite_databases']} per account "
                         "(deploy/README.md, 'Each platform within its limits')")

    pairs, partitions = subscriptions()
    if not pairs or partitions is None:
        problems.append("could not read SUBSCRIPTIONS or PARTITIONS from crates/shop-kit/src")
        return
    per_order = sum(1 for source in HAPPY_PATH_SOURCES for s, _ in pairs if s == source)
    per_order += PROVIDER_CALLS_PER_ORDER
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
              f"{len(addresses)} per replica"]
    if sweeps < CLOUD_LIMITS["outbound_per_hour"]:
        orders = (CLOUD_LIMITS["outbound_per_hour"] - sweeps) // per_order
        claims.append(f"**at most {orders} orders per hour**")
    for claim in claims:
        if claim not in limits:
            problems.append(f"README 'Each platform within its limits' should say {claim!r} "
                            "(recomputed from subscriptions.rs, stream.rs, spin.toml and the "
                            "Cloud crontab)")


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
        check_secrets(objects, spinapp, cronjob, redis, problems)
        check_redis_address(spin, spinapp, problems)
        check_redis_auth(redis, spinapp, problems)
        check_runtime_config_example(objects, spinapp, problems)
    check_runtime_config(spin, args.manifest, problems)
    check_cloud(spin, args.manifest, args.cloud_manifest, problems)
    check_readme(args.readme, problems)
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
