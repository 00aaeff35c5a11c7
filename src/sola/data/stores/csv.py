"""A directory with one `.csv` per video, BMN/BSN ActivityNet style: a header row, one row per snippet."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from sola.core.errors import StoreError
from sola.data.stores.base import PREFIX, SUFFIX, DirectoryStore, DirectoryWriter, StoreOption, register_layout

CSV_DTYPES = ("float16", "float32", "float64")
DTYPE = StoreOption("dtype", str, f"dtype the values are read as ({', '.join(CSV_DTYPES)}; CSV holds none)", cli=False)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


INDEX_NAMES = ("", "Unnamed: 0", "index")  # pandas' `to_csv(index=True)` row-index column


def has_index_column(header: list[str] | None) -> bool:
    """True when the first column holds row numbers (pandas `to_csv` with its index)."""
    return header is not None and len(header) > 1 and header[0] in INDEX_NAMES


def read_header(file: Path) -> list[str] | None:
    """The column names of a feature CSV, or None when its first row is already feature values.

    A first row of names, or pandas' default names `0,1,...,C-1`, is a header.
    """
    try:
        with open(file, encoding="utf-8") as handle:
            first = handle.readline()
    except UnicodeDecodeError:
        raise StoreError(f"{file}: not a text CSV file; re-export it") from None
    except OSError as exc:
        raise StoreError(f"{file}: cannot read ({exc})") from None
    cells = [cell.strip() for cell in first.rstrip("\r\n").split(",")]
    if not first.strip():
        return None
    numbered = cells[1:] if cells[0] in INDEX_NAMES else cells
    if numbered == [str(i) for i in range(len(numbered))]:
        return cells
    return None if all(_is_number(cell) for cell in cells) else cells


def _check_last_line(file: Path) -> None:
    """Raise `StoreError` when a non-empty CSV does not end with a line end: a file cut inside its last
    row would otherwise read as a shorter, wrong last number ("11" cut to "1")."""
    try:
        with open(file, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return
            handle.seek(-1, os.SEEK_END)
            last = handle.read(1)
    except OSError as exc:
        raise StoreError(f"{file}: cannot read ({exc.strerror or exc})") from None
    if last not in (b"\n", b"\r"):
        raise StoreError(f"{file}: its last row has no line end, so the file looks truncated (cut inside a row); "
                         "re-export it, or end its last line with a newline if it is complete")


@register_layout("csv")
class CsvStore(DirectoryStore):
    """`DIR/{prefix}{video_id}{suffix}.csv`; the header row (e.g. `f0..f399`) is kept on output.

    CSV holds no dtype: values are read as `dtype` (float64 by default, exact for any text).
    """

    extensions = (".csv",)
    declared_options = (PREFIX, SUFFIX, DTYPE)

    def __init__(self, path: str | os.PathLike, prefix: str = "", suffix: str = "", dtype: str = "float64") -> None:
        super().__init__(path, prefix, suffix)
        if dtype not in CSV_DTYPES:
            raise StoreError(f"CSV dtype must be one of {', '.join(CSV_DTYPES)}, got {dtype!r}")
        self.dtype = dtype

    def header(self, video_id: str) -> list[str] | None:
        """Column names of one video's file (None if it has no header row)."""
        return read_header(self.file(video_id))

    def load_file(self, file: Path) -> np.ndarray:
        header = read_header(file)
        _check_last_line(file)
        columns = range(1, len(header)) if has_index_column(header) else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
                array = np.loadtxt(
                    file, delimiter=",", skiprows=1 if header else 0, dtype=self.dtype, ndmin=2,
                    usecols=columns, encoding="utf-8",
                )
        except ValueError as exc:
            raise StoreError(
                f"{file}: not a numeric feature CSV ({exc}); fix or re-export the file "
                "(every cell after the header must be a number, every row the same length)"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"{file}: cannot read ({exc})") from None
        names = len(header) - (1 if columns else 0) if header is not None else None
        if names is not None and array.size and array.shape[1] != names:
            raise StoreError(f"{file}: {array.shape[1]} values per row but {names} header names; fix or re-export it")
        return array

    def shape(self, video_id: str) -> tuple[int, int]:
        return tuple(self.read(video_id).shape)  # type: ignore[return-value]

    def options(self) -> dict[str, Any]:
        return {**super().options(), "dtype": self.dtype}

    def writer(self, out: str | os.PathLike) -> "CsvWriter":
        return CsvWriter(Path(out), self.prefix, self.suffix, source=self)


class CsvWriter(DirectoryWriter):
    """Writes one CSV per video with the header of the same video in the source store.

    float64 values are written in their shortest exact form (`repr`), float32/16 with 9 significant
    digits (exact for float32), so reading back gives the same numbers.
    """

    extension = ".csv"
    layout = "csv"

    def __init__(self, path: Path, prefix: str = "", suffix: str = "", source: CsvStore | None = None) -> None:
        super().__init__(path, prefix, suffix)
        self.source = source

    def reader_options(self) -> dict[str, Any]:
        return {"dtype": self.source.dtype if self.source is not None else "float64"}

    def _header(self, video_id: str, dim: int) -> list[str] | None:
        if self.source is not None and video_id in self.source.files():
            header = self.source.header(video_id)
            if header is None:
                return None
            if len(header) - has_index_column(header) == dim:
                return header
        return [f"f{i}" for i in range(dim)]

    def dump(self, handle, video_id: str, features: np.ndarray) -> None:
        if features.ndim != 2:
            raise StoreError(f"features of video {video_id!r} must be (T, C), got shape {features.shape}")
        header = self._header(video_id, features.shape[1])
        lines = [",".join(header)] if header is not None else []
        if features.dtype == np.float64:
            rows = (",".join(map(repr, row)) for row in features.tolist())
        else:
            rows = (",".join(f"{value:.9g}" for value in row) for row in features.astype(np.float64).tolist())
        if has_index_column(header):
            rows = (f"{i},{row}" for i, row in enumerate(rows))
        lines.extend(rows)
        handle.write(("\n".join(lines) + "\n").encode("utf-8"))
