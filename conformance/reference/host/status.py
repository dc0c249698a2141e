"""`kmsconf host-status`: what a host database says, read without writing a byte (SQLite read-only mode)."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.parse
from pathlib import Path

from conformance import catalog as catalog_mod

from .state import ENTRY_LIFETIME_SECONDS

HOST_TABLES = {"clients", "capacity", "settings"}


class NotAHostDatabase(ValueError):
    """The file is missing, not SQLite, or SQLite without a kmsconf host's tables."""


def open_readonly(path: str | Path, fresh: bool = False) -> sqlite3.Connection:
    """The host database at `path`, read-only; with `fresh`, an SQLite file without any table passes too (what a
    host may start on)."""
    path = Path(path)
    if not path.is_file():
        raise NotAHostDatabase(f"{path}: no host database there (start `kmsconf host --db {path}` first)")
    try:
        db = sqlite3.connect(f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise NotAHostDatabase(f"{path}: cannot open it read-only ({exc})") from None
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        db.close()
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB":
            raise NotAHostDatabase(f"{path} is not a kmsconf host database (not an SQLite file)") from None
        if fresh:
            raise  # a host starting: the disk's trouble, which the host explains (StoreUnusable)
        raise NotAHostDatabase(f"{path}: cannot read it ({exc})") from None
    if not HOST_TABLES <= tables and not (fresh and not tables):
        db.close()
        theirs = ", ".join(sorted(tables)) or "none"
        raise NotAHostDatabase(f"{path} is not a kmsconf host database (its tables: {theirs}; a host's: "
                               f"{', '.join(sorted(HOST_TABLES))})")
    return db


def check_host_database(path: str | Path) -> None:
    """Before a host writes to `path`: no file, an empty one, or a host database; else NotAHostDatabase, and the
    file is left as it was."""
    if Path(path).is_file() and Path(path).stat().st_size:
        open_readonly(path, fresh=True).close()


def read_status(path: str | Path, now: float | None = None) -> dict:
    """Counts and cache sizes per application, the host's settings, ePIDs and HwId, and its last requests."""
    now = time.time() if now is None else now
    db = open_readonly(path)
    try:
        settings = {key: json.loads(value) for key, value in db.execute("SELECT key, value FROM settings")}
        apps = {}
        for app, capacity in db.execute("SELECT app_id, capacity FROM capacity"):
            (count,) = db.execute("SELECT COUNT(*) FROM clients WHERE app_id = ? AND last_seen > ?",
                                  (app, now - ENTRY_LIFETIME_SECONDS)).fetchone()
            apps[app] = {"count": count, "cache_size": capacity}
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        events = []
        if "events" in tables:
            events = [json.loads(row) for (row,) in db.execute("SELECT record FROM events ORDER BY seq DESC LIMIT 20")]
    finally:
        db.close()
    host = settings.get("settings", {})
    windows = apps.get(str(catalog_mod.WINDOWS_APP_ID), {"count": 0, "cache_size": 0})
    epids = {key.removeprefix("epid:"): value for key, value in settings.items()
             if key.startswith("epid:") and key != "epid:other-key"}
    catalog = catalog_mod.load()
    names = {k.slug: k.name for k in catalog.host_keys}
    return {
        "count": windows["count"],
        "cache_size": windows["cache_size"],
        "applications": apps,
        "key_group": host.get("key_group") or "default",
        "host_keys": [names.get(slug, slug) for slug in epids],
        "epids": epids,
        "epid": next(iter(epids.values()), None),
        "hwid": str(settings.get("hwid", "")).upper(),
        "activation_interval": host.get("activation_interval"),
        "renewal_interval": host.get("renewal_interval"),
        "last_requests": events,
        "recording_failures": settings.get("recording_failures", []),  # written by the host as each one ends
    }
