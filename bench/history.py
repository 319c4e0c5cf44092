"""Reads over a large history: the API's hot reads with 100,000 operations in PostgreSQL.

    .venv/bin/python bench/history.py [--releases 10000] [--operations-per-release 10]
                                      [--events-per-operation 10] [--samples 300]
                                      [--purge-days 100] [--keep | --reuse] [--explain]

Creates the database ``provisioner_history_bench`` (dropped at the end unless ``--keep``),
migrates it, seeds it in the server (``INSERT ... SELECT`` over ``generate_series``: a few
seconds for a million rows) with releases, their components, operations shaped like real ones
(a stored descriptor, a system task and five component tasks with public info and logs, ten
events each, a Market Plane publication and its delivery per successful deploy), then serves it
with ``provisioner serve`` on loopback (authentication off) and times each read over HTTP, one
request at a time on a kept-alive connection. Prints p50 and p99 per read and their ratio to
``/healthz`` timed in the same run (the floor: HTTP, routing and JSON without the database),
and the service's CPU time per read (what a read costs whatever else the machine runs).
Then times a dry run and a purge of what ended more than ``--purge-days`` ago. Exit code 0
whatever the figures; 1 only when something broke.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from measure import cpu_seconds
from provisioner.store.database import Database
from provisioner.store.migrate import migrate
from provisioner.store.retention import RetentionPolicy, purge
from servers import POSTGRES_ADMIN_URL, ServerFailedError, service

DATABASE = "provisioner_history_bench"
ENVIRONMENTS = ("development", "production")
COMPONENTS = ("storage", "ingestion", "transform", "output-port", "observability")
TARGET_MS = 50.0
FLOOR = "/healthz"


@dataclass(frozen=True, slots=True)
class Shape:
    releases: int
    operations_per_release: int
    events_per_operation: int

    @property
    def units(self) -> int:
        return self.releases // len(ENVIRONMENTS)

    @property
    def operations(self) -> int:
        return self.units * len(ENVIRONMENTS) * self.operations_per_release


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=10_000)
    parser.add_argument("--operations-per-release", type=int, default=10)
    parser.add_argument("--events-per-operation", type=int, default=10)
    parser.add_argument("--samples", type=int, default=300, help="requests per read")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--explain", action="store_true", help="print each query's plan too")
    parser.add_argument(
        "--reuse", action="store_true", help="read a database kept by an earlier --keep run"
    )
    parser.add_argument(
        "--purge-days",
        type=float,
        default=100.0,
        help="then time a dry run and a purge of what ended longer ago (0: skip)",
    )
    return parser.parse_args(argv)


# --- seeding ----------------------------------------------------------------------------------

# One row per operation: the n-th (in time order) is operation k of release r. Its id is a
# UUIDv7 of its creation time, as the service makes them, so id order is time order.
_OPERATIONS = """
WITH numbered AS (
  SELECT n, n % :releases AS r, n / :releases AS k,
         now() - interval '200 days' + (n * interval '200 days' / :operations) AS created_at
  FROM generate_series(0, :operations - 1) AS n
), shaped AS (
  SELECT n, r, k, created_at,
         lpad(to_hex((extract(epoch FROM created_at) * 1000)::bigint), 12, '0') AS ms,
         md5(n::text) AS rnd,
         'urn:dmb:dp:bench:unit-' || (r / 2) || ':' || '0' AS unit,
         CASE WHEN r % 2 = 0 THEN 'development' ELSE 'production' END AS env,
         CASE WHEN k < :per_release - 1 AND n % 10 = 3 THEN 'UNDEPLOY' ELSE 'DEPLOY' END AS type,
         CASE WHEN k = :per_release - 1 AND r % 50 <> 7 THEN 'SUCCEEDED'
              WHEN n % 100 < 7 OR (k = :per_release - 1) THEN 'FAILED'
              WHEN n % 100 < 10 THEN 'CANCELLED' ELSE 'SUCCEEDED' END AS status
  FROM numbered
), identified AS (
  SELECT *, substr(ms, 1, 8) || '-' || substr(ms, 9, 4) || '-7' || substr(rnd, 1, 3) || '-8'
         || substr(rnd, 4, 3) || '-' || substr(rnd, 7, 12) AS id
  FROM shaped
), stored AS (
  INSERT INTO operations (id, type, deployment_unit_id, environment, version, status,
    remove_data, requested_components, retry_of, requested_by, request_id, trace_id, error,
    cancel_requested, warnings, release_status_before, owner, replica_id, fencing,
    lease_expires_at, created_at, started_at, finished_at, updated_at)
  SELECT id, type, unit, env, '1.' || k || '.0', status, false, NULL, NULL, 'ci-pipeline',
         rnd, rnd,
         CASE WHEN status = 'FAILED' THEN 'component ' || unit || ':' || 'transform failed' END,
         false, NULL, 'DEPLOYED', NULL, 'bench-replica', 1, NULL, created_at,
         created_at + interval '1 second', created_at + interval '40 seconds',
         created_at + interval '40 seconds'
  FROM identified
)
INSERT INTO operation_documents (operation_id, descriptor)
SELECT id, json_build_object(
         'id', unit, 'name', 'Bench unit ' || (r / 2), 'fullyQualifiedName', 'Bench ' || r,
         'description', repeat('A data product for the history benchmark. ', 8),
         'kind', 'dataproduct', 'domain', 'domain:bench', 'version', '1.' || k || '.0',
         'environment', env, 'dataProductOwner', 'user:owner', 'specific', json_build_object(),
         'components', (SELECT json_agg(json_build_object(
           'id', unit || ':' || c, 'name', c, 'kind', 'workload', 'description', 'The ' || c,
           'infrastructureTemplateId', 'urn:dmb:itm:bench-adapter:1',
           'useCaseTemplateId', 'urn:dmb:utm:bench:1', 'dependsOn', '[]'::json,
           'specific', json_build_object('size', 'small', 'replicas', 2)))
           FROM unnest(CAST(:components AS text[])) AS c))::text
FROM identified
WHERE type = 'DEPLOY'
"""

_TASKS = """
INSERT INTO tasks (operation_id, component_id, position, action, status, is_system,
  infrastructure_template_id, depends_on, attempts, token, started_at, finished_at,
  public_info, private_info, logs, error, validation)
SELECT o.id, CASE WHEN p.pos = 0 THEN o.deployment_unit_id
                  ELSE o.deployment_unit_id || ':' || c.name END,
       p.pos, CASE WHEN o.type = 'DEPLOY' THEN 'PROVISION' ELSE 'UNPROVISION' END,
       CASE WHEN o.status = 'SUCCEEDED' THEN 'SUCCEEDED'
            WHEN c.name = 'transform' THEN 'FAILED'
            WHEN p.pos > 3 THEN 'SKIPPED' ELSE 'SUCCEEDED' END,
       p.pos = 0, 'urn:dmb:itm:bench-adapter:1', '[]'::json, 1, md5(o.id || c.name),
       o.started_at + p.pos * interval '5 seconds', o.started_at + p.pos * interval '6 seconds',
       json_build_object('endpoint', json_build_object('type', 'string', 'label', 'Endpoint',
         'value', 'https://bench.example/' || c.name)),
       json_build_object('secretRef', 'vault:bench/' || c.name),
       json_build_array(json_build_object('timestamp', o.started_at, 'level', 'INFO',
         'message', 'provisioned ' || c.name)),
       CASE WHEN o.status = 'FAILED' AND c.name = 'transform'
            THEN json_build_object('errors', json_build_array('the transform job failed')) END,
       NULL
FROM operations AS o
CROSS JOIN unnest(CAST(:task_names AS text[])) WITH ORDINALITY AS c(name, ord)
CROSS JOIN LATERAL (SELECT (c.ord - 1)::int AS pos) AS p
"""

_EVENTS = """
INSERT INTO events (operation_id, component_id, old_status, new_status, at, detail, principal)
SELECT o.id,
       CASE WHEN e.i IN (1, 2, :per_operation) THEN NULL
            ELSE o.deployment_unit_id || ':' || (CAST(:components AS text[]))[1 + e.i % 5] END,
       CASE WHEN e.i = 1 THEN NULL WHEN e.i = 2 THEN 'PENDING'
            WHEN e.i = :per_operation THEN 'RUNNING'
            WHEN e.i % 2 = 1 THEN 'WAITING' ELSE 'RUNNING' END,
       CASE WHEN e.i = 1 THEN 'PENDING' WHEN e.i = 2 THEN 'RUNNING'
            WHEN e.i = :per_operation THEN o.status
            WHEN e.i % 2 = 1 THEN 'RUNNING' ELSE 'SUCCEEDED' END,
       o.created_at + e.i * interval '3 seconds',
       CASE WHEN e.i = 2 THEN json_build_object('owner', 'bench-replica/abc', 'fence', 1) END,
       'ci-pipeline'
FROM operations AS o CROSS JOIN generate_series(1, :per_operation) AS e(i)
ORDER BY o.id, e.i
"""

# The last operation of each release, and its last deploy (the descriptor's operation).
_RELEASES = """
INSERT INTO releases (deployment_unit_id, environment, status, version, descriptor_operation_id,
  last_operation_id, created_at, updated_at, status_reason)
SELECT last.deployment_unit_id, last.environment,
       CASE WHEN last.status = 'SUCCEEDED' THEN 'DEPLOYED' ELSE 'CORRUPT' END,
       last.version, deploy.id, last.id, first.created_at, last.finished_at, NULL
FROM (SELECT DISTINCT ON (deployment_unit_id, environment) *
      FROM operations ORDER BY deployment_unit_id, environment, id DESC) AS last
JOIN LATERAL (SELECT id FROM operations AS d
              WHERE d.deployment_unit_id = last.deployment_unit_id
                AND d.environment = last.environment AND d.type = 'DEPLOY'
              ORDER BY d.id DESC LIMIT 1) AS deploy ON true
JOIN LATERAL (SELECT created_at FROM operations AS f
              WHERE f.deployment_unit_id = last.deployment_unit_id
                AND f.environment = last.environment
              ORDER BY f.id LIMIT 1) AS first ON true
"""

_COMPONENTS = """
INSERT INTO components (deployment_unit_id, environment, component_id, is_system, member, status,
  version, infrastructure_template_id, depends_on, last_sent_operation_id,
  last_provisioned_operation_id, public_info, private_info, logs, last_operation_id,
  last_operation_type, last_task_status, last_finished_at, updated_at)
SELECT r.deployment_unit_id, r.environment, t.component_id, t.is_system, true,
       CASE WHEN t.status = 'SUCCEEDED' THEN 'DEPLOYED' ELSE 'CORRUPT' END, r.version,
       t.infrastructure_template_id, t.depends_on, r.last_operation_id,
       r.descriptor_operation_id, t.public_info, t.private_info, t.logs, r.last_operation_id,
       'DEPLOY', t.status, t.finished_at, r.updated_at
FROM releases AS r JOIN tasks AS t ON t.operation_id = r.last_operation_id
"""

_PUBLICATIONS = """
INSERT INTO publications (event_id, event, deployment_unit_id, environment, operation_id, version,
  detail, occurred_at)
SELECT md5('pub' || id), 'DEPLOYED', deployment_unit_id, environment, id, version, NULL,
       finished_at
FROM operations WHERE type = 'DEPLOY' AND status = 'SUCCEEDED' ORDER BY id
"""

_DELIVERIES = """
INSERT INTO deliveries (publication_id, marketplace, deployment_unit_id, environment, status,
  attempts, next_attempt_at, claimed_by, claimed_replica, claim_expires_at, overdue,
  last_attempt_at, last_status_code, last_error, delivered_at, created_at)
SELECT id, 'marketplace', deployment_unit_id, environment, 'DELIVERED', 1, occurred_at, NULL,
       NULL, NULL, false, occurred_at, 200, NULL, occurred_at, occurred_at
FROM publications
"""


def _bound(statement: str, parameters: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Integers written into the statement (so that PostgreSQL types the arithmetic), lists
    bound as arrays."""
    for name, value in parameters.items():
        if isinstance(value, int):
            statement = statement.replace(f":{name}", str(value))
    lists = {k: v for k, v in parameters.items() if isinstance(v, list) and f":{k}" in statement}
    return text(statement), lists


async def seed(url: str, shape: Shape) -> dict[str, float]:
    """Fill the migrated database; the seconds each table took."""
    parameters = {
        "releases": shape.units * len(ENVIRONMENTS),
        "operations": shape.operations,
        "per_release": shape.operations_per_release,
        "per_operation": shape.events_per_operation,
        "components": list(COMPONENTS),
        "task_names": ["system", *COMPONENTS],
    }
    steps = {
        "operations": _OPERATIONS,
        "tasks": _TASKS,
        "events": _EVENTS,
        "releases": _RELEASES,
        "components": _COMPONENTS,
        "publications": _PUBLICATIONS,
        "deliveries": _DELIVERIES,
    }
    timings: dict[str, float] = {}
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for table, statement in steps.items():
                started = time.perf_counter()
                await conn.execute(*_bound(statement, parameters))
                timings[table] = time.perf_counter() - started
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))
    finally:
        await engine.dispose()
    return timings


async def counts(url: str) -> dict[str, int]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            tables = ("releases", "components", "operations", "tasks", "events", "publications")
            return {
                table: int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
                for table in tables
            }
    finally:
        await engine.dispose()


async def samples(url: str) -> dict[str, list[str]]:
    """Ids to read: releases, operations spread over the whole history, deep cursors."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:

            async def column(statement: str) -> list[str]:
                return [str(value) for value in (await conn.execute(text(statement))).scalars()]

            return {
                "units": await column(
                    "SELECT deployment_unit_id || ' ' || environment FROM releases"
                    " ORDER BY random() LIMIT 2000"
                ),
                "operations": await column(
                    "SELECT id FROM operations ORDER BY random() LIMIT 2000"
                ),
                "failed": await column(
                    "SELECT id FROM operations WHERE status = 'FAILED' ORDER BY random() LIMIT 500"
                ),
                "release_keys": await column(
                    "SELECT deployment_unit_id || ' ' || environment FROM releases"
                    " ORDER BY random() LIMIT 500"
                ),
            }
    finally:
        await engine.dispose()


# --- measuring --------------------------------------------------------------------------------


def cursor(*parts: str) -> str:
    """The API's opaque cursor (store/queries.py's encoding)."""
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


def reads(ids: dict[str, list[str]]) -> dict[str, Callable[[random.Random], str]]:
    """Each read, as a function of a random generator giving one request path."""

    def release(rnd: random.Random) -> tuple[str, str]:
        unit, env = rnd.choice(ids["units"]).split(" ")
        return unit, env

    def release_path(rnd: random.Random) -> str:
        unit, env = release(rnd)
        return f"/v1/deployment-units/{unit}/environments/{env}"

    return {
        "release": release_path,
        "release with descriptor": lambda rnd: release_path(rnd) + "?includeDescriptor=true",
        "operation (with tasks)": lambda rnd: f"/v1/operations/{rnd.choice(ids['operations'])}",
        "operation events": lambda rnd: f"/v1/operations/{rnd.choice(ids['operations'])}/events",
        "operations, first page (100)": lambda rnd: "/v1/operations?limit=100",
        "operations, deep cursor": lambda rnd: (
            f"/v1/operations?limit=100&cursor={cursor(rnd.choice(ids['operations']))}"
        ),
        "operations of a unit": lambda rnd: (
            f"/v1/operations?limit=50&deploymentUnitId={release(rnd)[0]}"
        ),
        "operations of a release (20)": lambda rnd: (
            "/v1/operations?limit=20&deploymentUnitId={}&environment={}".format(*release(rnd))
        ),
        "operations of an environment": lambda rnd: (
            f"/v1/operations?limit=100&environment={rnd.choice(ENVIRONMENTS)}"
        ),
        "operations FAILED": lambda rnd: "/v1/operations?limit=100&status=FAILED",
        "operations FAILED, deep cursor": lambda rnd: (
            f"/v1/operations?limit=100&status=FAILED&cursor={cursor(rnd.choice(ids['failed']))}"
        ),
        "operations RUNNING (none)": lambda rnd: "/v1/operations?limit=100&status=RUNNING",
        "operations FAILED in an environment": lambda rnd: (
            f"/v1/operations?limit=100&status=FAILED&environment={rnd.choice(ENVIRONMENTS)}"
        ),
        "releases, first page (100)": lambda rnd: "/v1/releases",
        "releases, dashboard page (500)": lambda rnd: "/v1/releases?limit=500",
        "releases, deep cursor": lambda rnd: "/v1/releases?cursor={}".format(
            cursor(*rnd.choice(ids["release_keys"]).split(" "))
        ),
        "releases of an environment (500)": lambda rnd: (
            f"/v1/releases?limit=500&environment={rnd.choice(ENVIRONMENTS)}"
        ),
        "releases CORRUPT (500)": lambda rnd: "/v1/releases?limit=500&status=CORRUPT",
        "releases CORRUPT in an environment": lambda rnd: (
            f"/v1/releases?limit=500&status=CORRUPT&environment={rnd.choice(ENVIRONMENTS)}"
        ),
        "publications of a release": lambda rnd: release_path(rnd) + "/publications",
    }


@dataclass(slots=True)
class Figures:
    """Each read's latencies (ms) and the service's CPU time spent answering it (s)."""

    latencies: dict[str, list[float]]
    cpu: dict[str, float]


def time_reads(
    client: httpx.Client,
    paths: dict[str, Callable[[random.Random], str]],
    *,
    rounds: int,
    service_pid: int,
) -> Figures:
    """Milliseconds of each read, ``rounds`` times, in rounds that ask each read once (so
    that whatever else the machine does falls on every read alike), after a few rounds
    unmeasured; every answer checked 200. The service's CPU time is read around each request
    (in clock ticks: summed over the rounds it is a fair share, not a per-request figure)."""
    rnd = random.Random(7)
    figures = Figures({name: [] for name in paths}, dict.fromkeys(paths, 0.0))
    for index in range(rounds + 10):
        for name, path_of in paths.items():
            path = path_of(rnd)
            cpu_before = cpu_seconds(service_pid)
            started = time.perf_counter()
            response = client.get(path)
            elapsed = (time.perf_counter() - started) * 1000
            cpu_after = cpu_seconds(service_pid)
            if response.status_code != 200:
                raise ServerFailedError(f"GET {path}: {response.status_code} {response.text[:300]}")
            if index >= 10:
                figures.latencies[name].append(elapsed)
                figures.cpu[name] += cpu_after - cpu_before
    return figures


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def report(figures: Figures) -> bool:
    """Print the table; whether every read met the target."""
    floor = figures.latencies[FLOOR]
    floor_p50 = statistics.median(floor)
    header = (
        f"{'read':<40} {'min ms':>7} {'p50 ms':>8} {'p99 ms':>8} {'p50/floor':>10} {'CPU ms':>7}"
    )
    print(f"\n{header}  target p99 < {TARGET_MS:g} ms")
    met = True
    for name, values in figures.latencies.items():
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        cpu = figures.cpu[name] / len(values) * 1000
        ok = p99 < TARGET_MS
        met = met and (ok or name == FLOOR)
        verdict = "(the floor)" if name == FLOOR else "ok" if ok else "MISSED"
        print(
            f"{name:<40} {min(values):>7.2f} {p50:>8.2f} {p99:>8.2f} {p50 / floor_p50:>9.1f}x"
            f" {cpu:>7.2f}  {verdict}"
        )
    return met


async def explain(url: str, ids: dict[str, list[str]]) -> None:
    """EXPLAIN ANALYZE of the statements behind the reads (what an index change is judged by)."""
    unit, env = ids["units"][0].split(" ")
    operation = ids["operations"][0]
    statements = {
        "operations first page": "SELECT id FROM operations ORDER BY id DESC LIMIT 101",
        "operations of a unit": (
            f"SELECT id FROM operations WHERE deployment_unit_id = '{unit}' "
            "ORDER BY id DESC LIMIT 51"
        ),
        "operations of an environment": (
            f"SELECT id FROM operations WHERE environment = '{env}' ORDER BY id DESC LIMIT 101"
        ),
        "operations FAILED in an environment": (
            f"SELECT id FROM operations WHERE environment = '{env}' AND status = 'FAILED' "
            "ORDER BY id DESC LIMIT 101"
        ),
        "events": (
            f"SELECT * FROM events WHERE operation_id = '{operation}' AND id > 0 "
            "ORDER BY id LIMIT 1000"
        ),
        "releases CORRUPT": (
            "SELECT * FROM releases WHERE status = 'CORRUPT' "
            "ORDER BY deployment_unit_id, environment LIMIT 501"
        ),
        "releases of an environment": (
            f"SELECT * FROM releases WHERE environment = '{env}' "
            "ORDER BY deployment_unit_id, environment LIMIT 501"
        ),
    }
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            for name, statement in statements.items():
                plan = (await conn.execute(text("EXPLAIN ANALYZE " + statement))).scalars()
                print(f"\n-- {name}\n" + "\n".join(plan))
    finally:
        await engine.dispose()


async def time_purge(url: str, days: float) -> None:
    """A dry run, then the purge itself, of what ended more than ``days`` ago (the history
    spans 200 days), in the service's default batches."""
    database = Database(url)
    policy = RetentionPolicy(older_than=timedelta(days=days), batch_size=500)
    try:
        for dry_run in (True, False):
            started = time.perf_counter()
            report = await purge(database, policy, now=datetime.now(UTC), dry_run=dry_run)
            seconds = time.perf_counter() - started
            rows = ", ".join(f"{table} {count:,}" for table, count in report.rows.items())
            verb = "dry run" if dry_run else "purge"
            print(f"{verb} ({days:g} days): {seconds:.1f} s, {report.batches} batches: {rows}")
    finally:
        await database.dispose()


# --- the run ----------------------------------------------------------------------------------


async def _admin(statement: str) -> None:
    engine = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def prepare(url: str, shape: Shape) -> None:
    await _admin(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    await _admin(f'CREATE DATABASE "{DATABASE}"')
    database = Database(url)
    try:
        await migrate(database)
    finally:
        await database.dispose()
    started = time.perf_counter()
    timings = await seed(url, shape)
    seconds = ", ".join(f"{table} {value:.1f} s" for table, value in timings.items())
    print(f"seeded in {time.perf_counter() - started:.1f} s ({seconds})")
    print("rows: " + ", ".join(f"{k} {v:,}" for k, v in (await counts(url)).items()))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    shape = Shape(args.releases, args.operations_per_release, args.events_per_operation)
    url = make_url(POSTGRES_ADMIN_URL).set(database=DATABASE).render_as_string(hide_password=False)
    print(f"history benchmark: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    try:
        if not args.reuse:
            asyncio.run(prepare(url, shape))
        ids = asyncio.run(samples(url))
        if args.explain:
            asyncio.run(explain(url, ids))
        with (
            tempfile.TemporaryDirectory(prefix="provisioner-history-") as workdir,
            service(
                Path(workdir),
                database_url=url,
                adapter_url="http://127.0.0.1:9",
                label="history",
            ) as server,
            httpx.Client(base_url=server.url, timeout=30) as client,
        ):
            figures = time_reads(
                client,
                {FLOOR: lambda rnd: "/healthz", **reads(ids)},
                rounds=args.samples,
                service_pid=server.pid,
            )
        met = report(figures)
        print(f"\n{'every read met' if met else 'some reads missed'} the target (p99 < 50 ms)")
        if args.purge_days:
            print()
            asyncio.run(time_purge(url, args.purge_days))
    except (ServerFailedError, OSError) as exc:
        print(f"history benchmark broken: {exc}", file=sys.stderr)
        return 1
    finally:
        if not (args.keep or args.reuse):
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
