"""An indicator's source read into one series: JSON-stat 2.0 datasets and `period,value` CSV.

JSON-stat 2.0 (https://json-stat.org/format/), as Statistics Norway's PxWebApi 2.0 and most
statistics offices publish it:

- `id` lists the dimensions and `size` their sizes, in the order of the cells in `value`:
  row-major, the last dimension varying fastest.
- A dimension's `category.index` is a list of codes or an object of code → position; with a
  single category it may be left out (the code is then `category.label`'s only key).
  `category.label` gives the words.
- `value` is a list, or a sparse object of position → value; `status` is one string for every
  cell, a list, or a sparse object. A null (or absent) value is missing, never 0, and so is a
  cell whose status is one of MISSING_STATUS (SSB: `..` not available, `...` not yet
  published, `:` confidential, `.` not applicable), whatever value it carries.
- The time dimension is the one `role.time` names, else one named `Tid`, `time` or `year`;
  its codes (else labels) are periods (pipeline.indicators.normalise: `2024`, `2024K1`,
  `2024M01`).
- `sum` names one dimension whose categories are added up (municipalities into a region). A
  sum with a missing value among its parts is missing, never a partial sum: a region without
  one of its municipalities is not the region. After it, every dimension other than time must
  have one category, or the error names the dimension and its categories.
- The unit and decimals are the metric dimension's (`role.metric`, else `ContentsCode`):
  `category.unit[code]` with `base` (SSB), `label` or `symbol`, and `decimals`; else
  `extension.px.decimals`. The config's `unit` and `decimals` win over them.

No library is used: `pyjstat` pulls in pandas, `jsonstat.py` has not been released since 2017,
and `jsonstat-validator` only validates; reading a series out of a dataset is this module.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .indicators import normalise
from .models import Observation

MAX_CELLS = 1_000_000
"""Cells (the product of `size`) a dataset may declare: SSB's own limit is 800,000 an
extract; a larger claim is an error, not a reason to allocate."""
MISSING_STATUS = frozenset({"..", "...", ":", "."})
"""Statuses that mean "no value" (SSB's symbols; `:` is Eurostat's too)."""
TIME_NAMES = ("Tid", "time", "year")
"""Names of the time dimension when no `role.time` names it."""


class DatasetError(ValueError):
    """A source is not a dataset trnews can read; the message names what and the fix."""


@dataclass(frozen=True)
class Series:
    """One indicator's observations as a source publishes them."""

    observations: tuple[Observation, ...]
    unit: str = ""
    """The dataset's own unit, "" when it gives none."""
    decimals: int | None = None
    """The dataset's own decimals, None when it gives none."""
    label: str = ""


def read(data: bytes, *, sum_over: str | None = None) -> Series:
    """The series in `data`: a JSON-stat 2.0 dataset or a `period,value` CSV, told apart by
    their first character; DatasetError saying why when it is neither."""
    text = _decode(data)
    head = text.lstrip()[:1]
    if head == "{":
        return read_jsonstat(text, sum_over=sum_over)
    if head == "<":
        raise DatasetError(
            "an HTML page, not a JSON-stat dataset or CSV: check the URL (for SSB, "
            "…/tables/{id}/data?outputFormat=json-stat2)"
        )
    if sum_over is not None:
        raise DatasetError(f"sum = {sum_over!r} is for JSON-stat datasets, and this is a CSV")
    return read_csv(text)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(f"not UTF-8 text (byte {e.start}): save the file as UTF-8") from e


# -- JSON-stat 2.0 ---------------------------------------------------------------------------


def _refuse_constant(name: str) -> float:
    raise DatasetError(f"{name} is not a number JSON allows")


def read_jsonstat(text: str, *, sum_over: str | None = None) -> Series:
    """The series of a JSON-stat 2.0 dataset (see the module docstring)."""
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        raise DatasetError(f"not valid JSON ({e.msg} at line {e.lineno})") from e
    except RecursionError as e:
        raise DatasetError("JSON nested too deeply") from e
    if not isinstance(doc, dict):
        raise DatasetError("not a JSON-stat dataset (the JSON is not an object)")
    if doc.get("class") != "dataset":
        hint = (
            " (a JSON-stat 1.x answer: ask for outputFormat=json-stat2)"
            if "class" not in doc
            else ""
        )
        raise DatasetError(f"not a JSON-stat 2.0 dataset (class is {doc.get('class')!r}){hint}")
    dims = _dimensions(doc)
    names = [d.name for d in dims]
    total = math.prod(d.size for d in dims)
    values = _cells(doc.get("value"), "value", total, numeric=True)
    statuses = _cells(doc.get("status"), "status", total, numeric=False)
    time = _time_dimension(doc, dims)
    if sum_over is not None and sum_over not in names:
        raise DatasetError(
            f"sum = {sum_over!r}: the dataset has no such dimension (it has {', '.join(names)})"
        )
    for d in dims:
        if d.name not in (time.name, sum_over) and d.size != 1:
            shown = ", ".join(d.codes[:5]) + (", …" if d.size > 5 else "")
            raise DatasetError(
                f"dimension {d.name!r} has {d.size} categories ({shown}): select one in the URL "
                f"(valueCodes[{d.name}]=…) or add them up with sum = {d.name!r}"
            )
    strides = [math.prod(x.size for x in dims[i + 1 :]) for i in range(len(dims))]
    t_at = names.index(time.name)
    s_at = names.index(sum_over) if sum_over is not None else None
    parts = dims[s_at].size if s_at is not None else 1
    periods: dict[str, Observation] = {}
    for ti, code in enumerate(time.codes):
        period = _period(code, time.labels.get(code, ""), time.name)
        if period in periods:
            raise DatasetError(f"dimension {time.name!r}: the period {period} is there twice")
        cells = []
        for si in range(parts):
            at = ti * strides[t_at] + (si * strides[s_at] if s_at is not None else 0)
            value, status = values.get(at), statuses.get(at)
            cells.append(None if status in MISSING_STATUS else value)
        total_value = None if any(c is None for c in cells) else _add(cells)
        periods[period] = Observation(period, total_value)
    unit, decimals = _unit(doc, dims)
    return Series(tuple(periods.values()), unit, decimals, _text(doc.get("label")))


@dataclass(frozen=True)
class _Dimension:
    name: str
    codes: list[str]
    """The categories' codes, in position order."""
    labels: dict[str, str]
    category: dict[str, Any]

    @property
    def size(self) -> int:
        return len(self.codes)


def _dimensions(doc: dict[str, Any]) -> list[_Dimension]:
    ids, sizes, dimension = doc.get("id"), doc.get("size"), doc.get("dimension")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not ids:
        raise DatasetError("not a JSON-stat 2.0 dataset: `id` must list the dimensions")
    if not isinstance(sizes, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in sizes
    ):
        raise DatasetError("not a JSON-stat 2.0 dataset: `size` must list whole numbers")
    if len(ids) != len(sizes):
        raise DatasetError(f"`id` names {len(ids)} dimensions but `size` gives {len(sizes)}")
    if len(set(ids)) != len(ids):
        raise DatasetError("`id` names a dimension twice")
    if math.prod(sizes) > MAX_CELLS:
        raise DatasetError(
            f"`size` declares {math.prod(sizes):,} cells, more than {MAX_CELLS:,}: select fewer "
            "categories in the URL"
        )
    if not isinstance(dimension, dict):
        raise DatasetError("not a JSON-stat 2.0 dataset: `dimension` is missing")
    return [
        _dimension(name, size, dimension.get(name)) for name, size in zip(ids, sizes, strict=True)
    ]


def _dimension(name: str, size: int, raw: Any) -> _Dimension:
    where = f"dimension {name!r}"
    category = raw.get("category") if isinstance(raw, dict) else None
    if not isinstance(category, dict):
        raise DatasetError(f"{where} is missing or has no `category`")
    labels_raw = category.get("label")
    labels = (
        {str(k): _text(v) for k, v in labels_raw.items()} if isinstance(labels_raw, dict) else {}
    )
    index = category.get("index")
    if isinstance(index, list):
        codes = [str(c) for c in index]
    elif isinstance(index, dict):
        codes = [""] * len(index)
        for code, pos in index.items():
            if not isinstance(pos, int) or isinstance(pos, bool) or not 0 <= pos < len(index):
                raise DatasetError(f"{where}: category {code!r} has position {pos!r}")
            if codes[pos]:
                raise DatasetError(f"{where}: two categories at position {pos}")
            codes[pos] = str(code)
    elif index is None and len(labels) == 1:
        codes = list(labels)
    else:
        raise DatasetError(f"{where}: `category.index` must be a list or an object")
    if len(set(codes)) != len(codes):
        raise DatasetError(f"{where}: a category is listed twice")
    if len(codes) != size:
        raise DatasetError(f"{where} has {len(codes)} categories but `size` says {size}")
    return _Dimension(name, codes, labels, category)


def _cells(raw: Any, key: str, total: int, *, numeric: bool) -> dict[int, Any]:
    """`value` or `status` as position → entry, whichever form it came in."""
    if raw is None:
        if numeric:
            raise DatasetError("not a JSON-stat 2.0 dataset: `value` is missing")
        return {}
    if not numeric and isinstance(raw, str):
        return dict.fromkeys(range(total), raw)
    if isinstance(raw, list):
        if len(raw) != total:
            raise DatasetError(f"`{key}` has {len(raw)} entries but `size` declares {total} cells")
        items: Iterable[tuple[int, Any]] = enumerate(raw)
    elif isinstance(raw, dict):
        pairs = []
        for k, v in raw.items():
            if not (isinstance(k, str) and k.isascii() and k.isdigit() and int(k) < total):
                raise DatasetError(f"`{key}` has an entry at {k!r}, not a cell of the dataset")
            pairs.append((int(k), v))
        items = pairs
    else:
        raise DatasetError(f"`{key}` must be a list or an object")
    out: dict[int, Any] = {}
    for pos, v in items:
        if v is None:
            continue
        if numeric and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise DatasetError(f"`value` at cell {pos} is {v!r:.40}, not a number (or null)")
        if numeric and not math.isfinite(v):
            raise DatasetError(f"`value` at cell {pos} is too large a number")
        if not numeric and not isinstance(v, str):
            raise DatasetError(f"`status` at cell {pos} is {v!r:.40}, not a string")
        out[pos] = float(v) if numeric else v
    return out


def _time_dimension(doc: dict[str, Any], dims: list[_Dimension]) -> _Dimension:
    by_name = {d.name: d for d in dims}
    role = doc.get("role")
    named = role.get("time") if isinstance(role, dict) else None
    if isinstance(named, list):
        for name in named:
            if name in by_name:
                return by_name[name]
    for name in TIME_NAMES:
        if name in by_name:
            return by_name[name]
    raise DatasetError(
        f"no time dimension: none has role time, nor is named {', '.join(TIME_NAMES)} "
        f"(the dimensions are {', '.join(by_name)})"
    )


def _period(code: str, label: str, dimension: str) -> str:
    for text in (code, label):
        try:
            return normalise(text)
        except ValueError:
            continue
    raise DatasetError(
        f"dimension {dimension!r}: {code[:40]!r} is not a period (a year 2024, a quarter 2024K1 "
        "or a month 2024M01)"
    )


def _add(cells: list[float | None]) -> float:
    # fsum, then rounded: 0.1 + 0.2 is 0.3 as published, not 0.30000000000000004
    return round(math.fsum(c for c in cells if c is not None), 9)


def _unit(doc: dict[str, Any], dims: list[_Dimension]) -> tuple[str, int | None]:
    """The metric dimension's unit and decimals (of its first category), else the px
    extension's decimals."""
    role = doc.get("role")
    metric_names = role.get("metric") if isinstance(role, dict) else None
    candidates = [*(metric_names if isinstance(metric_names, list) else []), "ContentsCode"]
    unit, decimals = "", None
    for d in dims:
        if d.name not in candidates:
            continue
        units = d.category.get("unit")
        if isinstance(units, dict) and d.codes and isinstance(units.get(d.codes[0]), dict):
            u = units[d.codes[0]]
            unit = next((_text(u[k]) for k in ("base", "label", "symbol") if _text(u.get(k))), "")
            decimals = _decimals(u.get("decimals"))
        break
    if decimals is None:
        extension = doc.get("extension")
        px = extension.get("px") if isinstance(extension, dict) else None
        if isinstance(px, dict):
            decimals = _decimals(px.get("decimals"))
    return unit, decimals


def _decimals(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
        return value
    return None


def _text(value: Any) -> str:
    return " ".join(value.split())[:200] if isinstance(value, str) else ""


# -- CSV ------------------------------------------------------------------------------------


def read_csv(text: str) -> Series:
    """A CSV with the header `period,value` (or `period;value`): one period a line. A semicolon
    file may write decimals with a comma (`12,5`); an empty value or `..` is missing."""
    lines = text.splitlines()
    if not lines:
        raise DatasetError("an empty file: write a header `period,value` and one period a line")
    delimiter = ";" if lines[0].count(";") > lines[0].count(",") else ","
    rows = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip().lower() for h in next(rows)]
    if header != ["period", "value"]:
        raise DatasetError(
            f"the header is {delimiter.join(header)!r}: it must be `period,value` (or "
            "`period;value`)"
        )
    out: dict[str, Observation] = {}
    for n, row in enumerate(rows, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 2:
            raise DatasetError(f"line {n} has {len(row)} fields, not 2 (period and value)")
        try:
            period = normalise(row[0])
        except ValueError as e:
            raise DatasetError(f"line {n}: {e}") from e
        if period in out:
            raise DatasetError(f"line {n}: the period {period} is there twice")
        out[period] = Observation(period, _number(row[1], n))
    if not out:
        raise DatasetError("no periods under the header `period,value`")
    return Series(tuple(out.values()))


def _number(text: str, line: int) -> float | None:
    raw = text.strip()
    if not raw or raw in MISSING_STATUS:
        return None
    clean = raw.replace("\u00a0", "").replace(" ", "")
    if "," in clean:
        if "." in clean or clean.count(",") > 1:
            raise DatasetError(f"line {line}: {raw!r} is not a number (write 1234.5 or 1234,5)")
        clean = clean.replace(",", ".")
    try:
        value = float(clean)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DatasetError(f"line {line}: {raw[:40]!r} is not a number (or empty, or ..)")
    return value
