"""Where nbgrader's gradebook lives: SQLite (one instructor) or PostgreSQL (shared).

nbgrader keeps every grade in one SQLAlchemy database, ``CourseDirectory.db_url``.
SQLite (``gradebook.db`` in the course folder) is the default. Several graders and
grading workers (:mod:`course.grading.cluster`) share one PostgreSQL gradebook
instead: set ``COURSE_DB_URL`` (read by the course's ``nbgrader_config.py``, so
nbgrader's own commands, ``course grade`` and ``course report`` all use it), e.g.
``postgresql+psycopg://grader@db.example.org/sgd``. Keep the password out of the
URL: psycopg reads it from ``PGPASSFILE`` (``~/.pgpass``) or ``PGPASSWORD``.

:func:`migrate` copies an existing gradebook into an empty one (``course gradebook
migrate --to URL``) table by table with nbgrader's own SQLAlchemy models
(:mod:`nbgrader.api`), then checks that every table holds as many rows and every
submission, notebook and cell the same scores and comments.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
from typing import Any, Iterator

#: The environment variable that points every grading command at a gradebook.
DB_URL_ENV = "COURSE_DB_URL"
_DRIVERS = ("sqlite", "postgresql", "postgresql+psycopg")


class GradebookError(Exception):
    """A gradebook URL that is malformed, unsupported or unreachable."""


def db_url(root: pathlib.Path | str = ".") -> str:
    """The gradebook of the course folder ``root``: ``$COURSE_DB_URL``, else its SQLite file."""
    return os.environ.get(DB_URL_ENV) or f"sqlite:///{pathlib.Path(root).resolve() / 'gradebook.db'}"


def shown(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<not a database URL>"


def check(url: str, exists: bool = False) -> str:
    """Connect once to the gradebook at ``url`` and return it; :class:`GradebookError`
    names what is wrong (not a URL, another database, no driver, unreachable). With
    ``exists``, an SQLite file must already be there (nbgrader would create an empty one)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise GradebookError("not a database URL (e.g. "
                             "postgresql+psycopg://USER@HOST:5432/DB or sqlite:///gradebook.db)") \
            from None
    if parsed.drivername not in _DRIVERS:
        raise GradebookError(f"unsupported gradebook database {parsed.drivername!r}: use "
                             "postgresql+psycopg://... or sqlite:///...")
    if parsed.drivername.startswith("sqlite"):
        path = pathlib.Path(parsed.database or "")
        if exists and not path.is_file():
            raise GradebookError(f"no {path.name or 'gradebook'} in {path.parent.resolve()}")
        return url
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 10})
    except ImportError as exc:     # pragma: no cover - psycopg is in the cluster extra
        raise GradebookError(f"{exc}: pip install -e '.[cluster]'") from None
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise GradebookError(f"cannot connect to the gradebook at {shown(url)}: {reason}") \
            from None
    finally:
        engine.dispose()
    return url


def _nbgrader_path() -> None:
    """nbgrader runs alembic by name when it creates a gradebook."""
    bin_dir = str(pathlib.Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def _rows(session: Any, table: Any) -> int:
    from sqlalchemy import func, select
    return session.execute(select(func.count()).select_from(table)).scalar_one()


@contextlib.contextmanager
def _session(url: str) -> Iterator[Any]:
    """A session on an existing gradebook that, unlike nbgrader's ``Gradebook``, adds
    nothing to it (no course row)."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def contents(url: str) -> dict[str, object]:
    """Every row count and every score, flag and comment of a gradebook (through
    nbgrader's models), for comparing two."""
    from nbgrader.api import Base, SubmittedAssignment
    with _session(url) as db:
        counts = {t.name: _rows(db, t) for t in Base.metadata.sorted_tables}
        scores: dict[str, object] = {}
        for sub in db.query(SubmittedAssignment):
            key = f"{sub.student_id}/{sub.assignment.name}"
            scores[key] = (float(sub.score), float(sub.max_score), str(sub.timestamp))
            for nb in sub.notebooks:
                scores[f"{key}/{nb.name}"] = nb.flagged
                for g in nb.grades:
                    scores[f"{key}/{nb.name}/{g.name}"] = (
                        g.auto_score, g.manual_score, g.extra_credit, g.needs_manual_grade)
                for c in nb.comments:
                    scores[f"{key}/{nb.name}/{c.name}#"] = (c.auto_comment, c.manual_comment)
    return {"rows": counts, "scores": scores}


def migrate(source: str, dest: str) -> dict[str, int]:
    """Copy the gradebook at ``source`` into the empty one at ``dest`` (created with
    nbgrader's schema if need be), in one transaction, and check the copy
    (:func:`contents` equal). Returns table -> rows copied."""
    from nbgrader.api import Base, Course, Gradebook
    check(source, exists=True)
    check(dest)
    _nbgrader_path()
    tables = Base.metadata.sorted_tables              # parents before children
    with _session(source) as src:
        rows = {t.name: [dict(r) for r in src.execute(t.select()).mappings()] for t in tables}
    courses = [r["id"] for r in rows[Course.__tablename__]]
    # nbgrader's Gradebook creates the schema (and its alembic version) and a course row
    with Gradebook(dest, courses[0] if courses else "") as dst:
        filled = [t.name for t in tables if t.name != Course.__tablename__ and _rows(dst.db, t)]
        if filled:
            raise GradebookError(f"the gradebook at {shown(dest)} is not empty (rows in "
                                 f"{', '.join(filled)}): migrate into a new database")
        dst.db.execute(Course.__table__.delete())
        for table in tables:
            if rows[table.name]:
                dst.db.execute(table.insert(), rows[table.name])
        dst.db.commit()
    copied = {name: len(r) for name, r in rows.items()}
    before, after = contents(source), contents(dest)
    if before != after:
        wrong = sorted(k for k in before["scores"] if before["scores"][k] != after["scores"].get(k))
        raise GradebookError(f"the copy differs from {shown(source)}: rows {after['rows']} "
                             f"against {before['rows']}; first differing: {wrong[:5]}")
    return copied
