"""A config's problems as a user reads them: (path, reason) pairs, the errors that carry them, and short,
bounded descriptions of any value they wrote."""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterable
from typing import Any

import attrs
import cattrs
from cattrs.errors import ForbiddenExtraKeysError

Problem = tuple[str, str]  # (dotted path, reason)


# A message lists this many problems and counts the rest: a broken or hostile file (100,000 unknown terms) is
# said in a few lines, and formatting it costs nothing however many problems it has.
SHOWN_PROBLEMS = 10


def _said(problem: Problem) -> str:
    path, reason = problem
    return f"{path}: {reason}" if path else reason


def _rest(problems: list[Problem]) -> str:
    """'' or how many problems a message leaves out, in words."""
    more = len(problems) - SHOWN_PROBLEMS
    return f"... and {more:,} more problem{'s' if more != 1 else ''}" if more > 0 else ""


class ConfigError(ValueError):
    """A config a user wrote is invalid: carries every problem at once, each with its full path; its message
    lists the first ``SHOWN_PROBLEMS`` and the count of the rest."""

    def __init__(self, problems: Iterable[Problem], source: str | None = None) -> None:
        self.problems: list[Problem] = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = [f"  {_said(p)}" for p in self.problems[:SHOWN_PROBLEMS]]
        rest = _rest(self.problems)
        if rest:
            lines.append(f"  {rest}")
        super().__init__(
            f"invalid loss config{where} ({len(self.problems):,} problem"
            f"{'s' if len(self.problems) != 1 else ''}):\n" + "\n".join(lines)
        )

    def one_line(self) -> str:
        """The message on one line: ``invalid loss config in FILE: path: reason; path: reason``."""
        where = f" in {self.source}" if self.source else ""
        said = [_said(p) for p in self.problems[:SHOWN_PROBLEMS]]
        rest = _rest(self.problems)
        return f"invalid loss config{where}: " + "; ".join(said + ([rest] if rest else []))


class InvalidConfig(ValueError):
    """Raised from a config class's own checks (``__attrs_post_init__``) with every problem it found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{p}: {r}" for p, r in self.problems))


def join(path: str, key: str | int) -> str:
    """Append a field name or index to a dotted config path."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """A short hint naming the closest valid option, or ''; a word with a letter that is not ASCII (a Cyrillic
    'ѕ' looks like 's') also gets that letter named, which the user cannot see in what they typed."""
    import difflib
    import itertools

    # the first HINT_OPTIONS options only: a hint over a config's own 100,000 names would cost seconds a call
    close = difflib.get_close_matches(word, list(itertools.islice(options, HINT_OPTIONS)), n=1, cutoff=0.6)
    return not_ascii(word) + (f"; did you mean {close[0]!r}?" if close else "")


HINT_OPTIONS = 1000
LISTED_NAMES = 20


def listed(names: Iterable[str], limit: int = LISTED_NAMES) -> str:
    """Names joined with ', ', at most ``limit`` of them and then how many in all; 'none' when there are none."""
    import itertools
    from collections.abc import Sized

    count = len(names) if isinstance(names, Sized) else None  # a dict's keys: not copied, however many
    if count is None:
        names = list(names)
        count = len(names)
    shown = ", ".join(itertools.islice(map(str, names), limit))
    return (shown + (f", ... ({count:,} in all)" if count > limit else "")) or "none"


def not_ascii(word: str) -> str:
    """'' or a note naming the first character of ``word`` that is not ASCII, with its code point and name."""
    import unicodedata

    if not isinstance(word, str) or word.isascii():
        return ""
    char = next(c for c in word if not c.isascii())
    name = unicodedata.name(char, "")
    return f"; {char!r} (U+{ord(char):04X}{' ' + name if name else ''}) is not ASCII"


class _BoundedRepr(reprlib.Repr):
    """reprlib with small limits: never formats more than a few elements of any container."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxtuple, self.maxdict, self.maxset = 3, 6, 6, 4, 6
        self.maxstring, self.maxlong, self.maxother = 60, 40, 60

    def repr1(self, x: Any, level: int) -> str:
        for base in (bool, int, float, str, list, tuple, dict, set, frozenset):
            if isinstance(x, base) and type(x) is not base:  # subclasses (e.g. YAML strings) as their base
                return getattr(self, f"repr_{base.__name__}", self.repr_instance)(x, level)
        return super().repr1(x, level)

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # repr() of a huge int is slow, and refused past 4300 digits
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_REPR = _BoundedRepr()


def _describe(value: Any) -> str:
    """A short repr of any value, bounded in time and memory however large the value is."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a user type whose __repr__ raises
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


# --- error paths ---------------------------------------------------------------------------------------

_MAPPING_KEY = re.compile(r"\['([^'\]]*)'\]")  # transform_error's ['key'] of a mapping: our .key


def _leaf_problems(exc: BaseException) -> list[Problem]:
    """One leaf of a cattrs error tree as (path below the leaf, reason) pairs.

    A validator names the field it speaks of by starting its message with ``<field>: `` (as attrs
    validators here do): that field becomes part of the path."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return [("", "missing (a required field)")]
    if isinstance(exc, ForbiddenExtraKeysError):
        fields = [a.name for a in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        return [  # hints for the keys a message shows (a table of 100,000 unknown keys is said at once)
            (k, f"unknown key{did_you_mean(k, fields) if i < SHOWN_PROBLEMS else ''} (valid keys: {', '.join(fields)})")
            for i, k in enumerate(sorted(exc.extra_fields))
        ]
    if isinstance(exc, InvalidConfig):
        return list(exc.problems)
    message = str(exc)
    head, sep, rest = message.partition(": ")
    if sep and head.replace("_", "").replace("[", "").replace("]", "").replace(".", "").isalnum() and " " not in head:
        return [(head, rest)]
    return [("", message)]


def problems_from(exc: BaseException, path: str) -> list[Problem]:
    """Flatten a cattrs / validator exception tree into (path, reason) pairs a person can read: cattrs's own
    ``transform_error`` walks the tree and builds each path, ``_leaf_problems`` says each leaf."""
    leaves: list[list[Problem]] = []

    def leaf(sub: BaseException, _: type | None) -> str:
        leaves.append(_leaf_problems(sub))
        return str(len(leaves) - 1)

    out: list[Problem] = []
    for line in cattrs.transform_error(exc, "$", leaf):
        index, _, where = line.partition(" @ ")
        below = _MAPPING_KEY.sub(r".\1", where[1:]).removeprefix(".")
        base = path + below if below.startswith("[") else join(path, below) if below else path
        out += [(join(base, p) if p else base, r) for p, r in leaves[int(index)]]
    return out
