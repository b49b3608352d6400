"""Loss configs from Hydra / OmegaConf: resolve the node, then load it like a file, with errors that name the
key as the Hydra config spells it (``loss.terms.sisdr.weight``)."""

from __future__ import annotations

from typing import Any, cast

from distill_core.config.converter import ConfigError
from distill_core.loss.config import LossConfig, load_config

SOURCE = "the OmegaConf config"


def _node_key(node: Any) -> str:
    """The dotted key of ``node`` inside its root config ('' at the root or when OmegaConf cannot tell)."""
    try:
        return str(node._get_full_key(None) or "")
    except Exception:  # a private OmegaConf helper: an older or newer version may lack it
        return ""


_ABSENT = object()
EXPECTED = "expected a mapping of loss settings (e.g. a config group option: loss: vae)"


def _selected(root: Any, key: str) -> Any:
    """``root``'s node at the dotted ``key``; a ConfigError naming the key when it is absent or null."""
    from omegaconf import OmegaConf

    node = OmegaConf.select(root, key, default=_ABSENT, throw_on_missing=False)
    if node is _ABSENT:
        raise ConfigError([(key, f"not in the config; {EXPECTED}")], SOURCE)
    if node is None:
        raise ConfigError([(key, f"is null ({key.rpartition('.')[2]}: null); {EXPECTED}")], SOURCE)
    return node


def load_omegaconf(node: Any, key: str | None = None) -> LossConfig:
    """``load_config(OmegaConf.to_container(node, resolve=True))``, but a missing value (``???``) or an
    interpolation that does not resolve becomes a ConfigError with the key's full path.

    ``load_omegaconf(cfg, key="loss")`` reads ``cfg.loss`` and names the key when it is absent or null;
    ``load_omegaconf(cfg.loss)`` gets None for ``loss: null`` and cannot know the key's name.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue, OmegaConfBaseException

    if key is not None:
        node = _selected(node, key)
    if node is None:
        raise ConfigError(
            [
                (
                    "",
                    f"got None instead of a config node: the key passed is null (e.g. loss: null); "
                    f"{EXPECTED}; load_omegaconf(cfg, key='loss') names the key",
                )
            ],
            SOURCE,
        )
    if not OmegaConf.is_config(node):
        raise ConfigError(
            [
                (
                    "",
                    f"got {type(node).__name__} instead of an OmegaConf config node (e.g. cfg.loss); "
                    "a plain mapping loads with load_config",
                )
            ],
            SOURCE,
        )
    try:
        data = OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        raise ConfigError(
            [
                (
                    exc.full_key or "",
                    "missing value (???): expected a value, set it in the config or on the command line",
                )
            ],
            SOURCE,
        ) from None
    except InterpolationResolutionError as exc:
        reason = str(exc.msg).splitlines()[0]
        raise ConfigError([(exc.full_key or "", f"interpolation does not resolve: {reason}")], SOURCE) from None
    except OmegaConfBaseException as exc:
        raise ConfigError([(getattr(exc, "full_key", "") or "", str(exc).splitlines()[0])], SOURCE) from None
    if not isinstance(data, dict):
        raise ConfigError(
            [(_node_key(node), f"expected a mapping of loss settings, got {type(data).__name__}")], SOURCE
        )
    prefix = _node_key(node)
    try:
        return load_config(cast(dict[str, Any], data))  # keys checked as any mapping's, by load_config
    except ConfigError as exc:
        if not prefix:
            raise
        raise ConfigError([(f"{prefix}.{p}" if p else prefix, r) for p, r in exc.problems], SOURCE) from None
