"""Back up the hub's gradebook(s) and nbgrader's exchange (``setup.sh backup DEST``, as root).

Writes ``DEST/<UTC time>/`` (mode 0700: it holds every submission and grade):

* the gradebook: with ``gradebook_db_url`` set, an ``sqlite:///`` URL is copied with
  SQLite's online backup API (consistent while the hub and nbgrader write to it) into
  ``gradebook.sqlite``, a ``postgresql://`` URL is dumped by ``pg_dump --format=custom``
  into ``gradebook.pgdump``; unset, each instructor's ``<home>/<course>/gradebook.db``
  (nbgrader's default) is copied the same way into ``gradebook-<instructor>.sqlite``;
* ``exchange.tar``: the exchange folder with owners (numeric), modes and sticky bits,
  symlinks stored as links (never followed);
* ``manifest.json``: what was saved, where from, and each file's SHA-256.

Restore (hub stopped): ``cp gradebook.sqlite <the gradebook's path>`` (owned by the
instructor), or ``pg_restore --clean --if-exists -d <url> gradebook.pgdump``; and
``tar -xpf exchange.tar --numeric-owner -C <the exchange's parent folder>``.
"""

from __future__ import annotations

import argparse
import datetime
import grp
import hashlib
import json
import os
import pathlib
import pwd
import sqlite3
import subprocess
import sys
import tarfile
import urllib.parse


def sqlite_backup(source: pathlib.Path, target: pathlib.Path) -> None:
    """A consistent copy of a live SQLite database (the online backup API)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def pg_dump(url: str, target: pathlib.Path) -> None:
    """``pg_dump`` of a PostgreSQL URL (SQLAlchemy's ``postgresql+driver://`` too)."""
    parts = urllib.parse.urlsplit(url)
    libpq_url = urllib.parse.urlunsplit(("postgresql",) + tuple(parts)[1:])
    subprocess.run(["pg_dump", "--format=custom", "--no-password", f"--file={target}",
                    f"--dbname={libpq_url}"], check=True)


def without_password(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for the manifest)."""
    password = urllib.parse.urlsplit(url).password
    return url.replace(f":{password}@", ":***@", 1) if password else url


def gradebooks(settings: dict) -> dict[str, str]:
    """Backup file name -> database URL: the configured one, or each instructor's default."""
    url = settings.get("gradebook_db_url") or ""
    if url:
        scheme = url.split(":", 1)[0].split("+", 1)[0]
        if scheme not in ("sqlite", "postgresql", "postgres"):
            sys.exit(f"sgd_backup: cannot back up a {scheme} gradebook (sqlite or postgresql)")
        return {"gradebook.sqlite" if scheme == "sqlite" else "gradebook.pgdump": url}
    try:
        group = grp.getgrnam(settings["instructor_group"])
    except KeyError:
        return {}
    names = set(group.gr_mem) | {p.pw_name for p in pwd.getpwall() if p.pw_gid == group.gr_gid}
    found = {}
    for name in sorted(names):
        db = pathlib.Path(pwd.getpwnam(name).pw_dir) / settings["course_id"] / "gradebook.db"
        if db.is_file():
            found[f"gradebook-{name}.sqlite"] = f"sqlite:///{db}"
    return found


def sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def backup(settings: dict, dest: pathlib.Path) -> pathlib.Path:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / stamp
    out.mkdir(mode=0o700)
    saved = {}
    for name, url in gradebooks(settings).items():
        if url.startswith("sqlite"):
            sqlite_backup(pathlib.Path(url.split(":///", 1)[1]), out / name)
        else:
            pg_dump(url, out / name)
        saved[name] = {"from": without_password(url)}
    exchange = pathlib.Path(settings["exchange"])
    with tarfile.open(out / "exchange.tar", "w") as tar:
        tar.add(exchange, arcname=exchange.name)     # tarfile never follows symlinks here
    saved["exchange.tar"] = {"from": str(exchange)}
    for name, info in saved.items():
        info["sha256"] = sha256(out / name)
    (out / "manifest.json").write_text(json.dumps({"time": stamp, "files": saved}, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", required=True, help="the hub's settings.json")
    parser.add_argument("dest", type=pathlib.Path, help="folder that receives <time>/")
    args = parser.parse_args(argv)
    os.umask(0o077)
    out = backup(json.loads(pathlib.Path(args.settings).read_text()), args.dest)
    print(f"backup in {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
