"""Input layouts ("B, 2, F, T", "B, C, N", "B, D"): parsed, compared, and checked before any batch.

A layout names one dimension per comma. An integer pins that dimension's size; a name is free. Two layouts
agree when they have the same rank and no dimension is pinned to two different sizes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

Reader = tuple[str, str, str]  # (term instance, its logical input, the layout it expects)


def parse(layout: str) -> tuple[str, ...]:
    """The dimensions of a layout string, stripped."""
    return tuple(d.strip() for d in layout.split(","))


def agree(a: str, b: str) -> bool:
    """Whether two layouts can describe one tensor."""
    da, db = parse(a), parse(b)
    return len(da) == len(db) and all(not (x.isdigit() and y.isdigit() and x != y) for x, y in zip(da, db))


def fits(layout: str, shape: Sequence[int]) -> bool:
    """Whether a tensor shape fits a layout (rank, and every pinned size)."""
    dims = parse(layout)
    return len(dims) == len(shape) and all(not d.isdigit() or int(d) == s for d, s in zip(dims, shape))


def _describe(key: str, readers: Iterable[Reader]) -> str:
    return "; ".join(
        f"{term} reads it as [{layout}]" + (f" (its input {logical!r})" if logical != key else "")
        for term, logical, layout in readers
    )


def conflicts(readers: Mapping[str, list[Reader]], declared: Mapping[str, str]) -> list[tuple[str, str]]:
    """One problem per batch key whose readers disagree with the declared layout or with each other."""
    problems: list[tuple[str, str]] = []
    for key, who in readers.items():
        if key in declared:
            bad = [r for r in who if not agree(r[2], declared[key])]
            if bad:
                problems.append(
                    (
                        f"batch.{key}",
                        f"the batch holds [{declared[key]}], but {_describe(key, bad)}; map "
                        f"those terms' inputs to other batch keys (inputs = {{...}})",
                    )
                )
        elif any(not agree(r[2], who[0][2]) for r in who[1:]):
            problems.append(
                (
                    f"batch.{key}",
                    f"terms disagree on this key's layout: {_describe(key, who)}; map some "
                    f"terms' inputs to other batch keys (inputs = {{...}})",
                )
            )
    return problems


def _shown(shape: Sequence[int]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def misfit(
    term: str, key: str, shape: Sequence[int], layout: str, *, via: str = "", channels: int | None = None
) -> str | None:
    """Why a tensor of ``shape`` under ``batch[key]`` does not fit ``layout`` (rank, then the first pinned
    size; ``channels`` pins dim 1), worded as every batch check words it; None when it fits."""
    dims = list(parse(layout))
    if channels is not None and len(dims) > 1:
        dims[1] = str(channels)
    if len(dims) != len(shape):
        return (
            f"{term}: batch[{key!r}]{via} expected shape [{layout}] ({len(dims)}-D), got {_shown(shape)} "
            f"({len(shape)}-D)"
        )
    for i, (d, size) in enumerate(zip(dims, shape)):
        if d.isdigit() and int(d) != size:
            what = "channels" if i == 1 else "entries"
            return (
                f"{term}: batch[{key!r}]{via} expected shape [{layout}] with {d} {what} in dim {i}, got {_shown(shape)}"
            )
    return None


def mismatches(readers: Mapping[str, list[Reader]], shapes: Mapping[str, Sequence[int]]) -> list[str]:
    """Every (batch key, term) whose expected layout the batch's actual tensor does not fit."""
    out = []
    for key, who in readers.items():
        if key in shapes:
            said: dict[str, list[str]] = {}  # one sentence per (key, reason), naming every term it concerns
            for term, logical, layout in who:
                via = f" (its input {logical!r})" if logical != key else ""
                wrong = misfit(term, key, shapes[key], layout, via=via)
                if wrong:
                    said.setdefault(wrong[len(term) :], []).append(term)
            out += [f"{', '.join(terms)}{reason}" for reason, terms in said.items()]
    return out
