"""Keyset ("seek") pagination: pages are found by the last row's sort key, never by OFFSET.

An OFFSET of n reads and throws away n rows, so page 2,000 of a million sessions would cost as much
as reading them all; a key predicate on an index costs the same on every page. The cursor in the
URL is the sort key of the row at the page's edge, base64url-encoded JSON: a position, not a secret.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Sequence

from sqlalchemy import BigInteger, Select, and_, or_
from werkzeug.exceptions import BadRequest

from idp.db import db
from idp.input_guard import is_storable

MAX_CURSOR_LENGTH = 512


@dataclass(frozen=True)
class Page:
    """One page of rows, with the cursors of the neighbouring pages (None at either end)."""

    rows: list
    next_cursor: str | None
    prev_cursor: str | None


def encode_cursor(values: Sequence[Any]) -> str:
    """The URL form of a sort key."""
    plain = [{"dt": value.isoformat()} if isinstance(value, datetime) else value for value in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(raw: str, columns: Sequence) -> tuple:
    """The sort key in a cursor, checked against the key columns' types; BadRequest if it was tampered with."""
    try:
        if len(raw) > MAX_CURSOR_LENGTH:
            raise ValueError("too long")
        plain = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if not isinstance(plain, list) or len(plain) != len(columns):
            raise ValueError("wrong shape")
        values = []
        for value, column in zip(plain, columns):
            if isinstance(value, dict):
                value = datetime.fromisoformat(value["dt"])
                if value.tzinfo is None:
                    raise ValueError("naive timestamp")
            expected = column.type.python_type
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ValueError("wrong type")
            if isinstance(value, int) and not -_integer_limit(column) <= value < _integer_limit(column):
                raise ValueError("out of range")  # would overflow the driver (OverflowError, NumericValueOutOfRange)
            if isinstance(value, str) and not is_storable(value):
                raise ValueError("unstorable text")
            values.append(value)
        return tuple(values)
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest("The page link is malformed; start again from the first page.") from None


def _integer_limit(column) -> int:
    """2**63 for a BIGINT column, 2**31 for any other integer column (PostgreSQL's INTEGER)."""
    return 2**63 if isinstance(column.type, BigInteger) else 2**31


def _beyond(columns: Sequence, values: tuple, descending: bool):
    """Rows strictly past `values` in the sort order (two keys at most: value, then unique tiebreak).

    Written as `a <= x AND (a < x OR b < y)` rather than a row comparison so that a single-column
    index on `a` still bounds the scan on every backend.
    """
    first, value = columns[0], values[0]
    if len(columns) == 1:
        return first < value if descending else first > value
    second, tiebreak = columns[1], values[1]
    if descending:
        return and_(first <= value, or_(first < value, second < tiebreak))
    return and_(first >= value, or_(first > value, second > tiebreak))


def paginate(
    query: Select,
    columns: Sequence,
    *,
    key: Callable[[Any], tuple],
    after: str | None = None,
    before: str | None = None,
    size: int = 50,
    descending: bool = True,
    scalars: bool = False,
) -> Page:
    """Run `query` ordered by `columns` and return the page after (or before) a cursor.

    `key(row)` gives a row's sort-key values; `scalars` returns ORM objects instead of row tuples.
    """
    backwards = bool(before) and not after
    cursor = after or before
    if cursor:
        query = query.where(_beyond(columns, decode_cursor(cursor, columns), descending != backwards))
    ascending_now = descending == backwards
    query = query.order_by(*[column.asc() if ascending_now else column.desc() for column in columns]).limit(size + 1)
    result = db.session.execute(query)
    rows = list(result.scalars() if scalars else result.all())
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
        next_cursor = encode_cursor(key(rows[-1])) if rows else None
        prev_cursor = encode_cursor(key(rows[0])) if rows and more else None
    else:
        next_cursor = encode_cursor(key(rows[-1])) if rows and more else None
        prev_cursor = encode_cursor(key(rows[0])) if rows and cursor else None
    return Page(rows=rows, next_cursor=next_cursor, prev_cursor=prev_cursor)
