"""A config's YAML text, byte for byte ``OmegaConf.to_yaml``'s, rendered once per distinct top-level value.

A sweep writes the same YAML again and again: each job's ``.hydra/config.yaml`` and ``hydra.yaml`` and
its result's ``config.yaml`` differ from the previous job's in a few top-level keys (a seed, the job's
number, its output dir). In block style (what OmegaConf writes) the YAML of a mapping is the YAML of
each of its top-level entries one after the other, so each entry's text is rendered by OmegaConf's own
dumper once and reused while its value is the same. Values that are not plain data (str, int, float,
bool, None, dict, list) are rendered whole, uncached, exactly as OmegaConf does. Entries of printable
ASCII text go through libyaml's emitter with OmegaConf's representers (the same bytes, a third of the time).
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import yaml
from omegaconf import Container, OmegaConf

_PLAIN = (str, int, float, bool, type(None))
_MAX = 4096  # cached entries (a few MB at most); the cache starts over when full: a sweep adds ~10 per job
_cache: dict[tuple[tuple[Any, ...], str], str] = {}
_heads: dict[tuple[tuple[Any, ...], str], Optional[str]] = {}


def _plain(v: Any) -> bool:
    t = type(v)
    if t in _PLAIN:
        return True
    if t is dict:
        return all(type(k) in _PLAIN and _plain(x) for k, x in v.items())
    if t is list:
        return all(_plain(x) for x in v)
    return False


def _dump(data: Any) -> str:
    from omegaconf._utils import get_omega_conf_dumper

    dumper = _c_dumper() if _c_safe(data) else get_omega_conf_dumper()
    return yaml.dump(data, default_flow_style=False, allow_unicode=True, sort_keys=False, Dumper=dumper)  # type: ignore[no-any-return]


@functools.cache
def _c_dumper() -> Any:
    """OmegaConf's dumper on libyaml's emitter (the same representers; ~3x faster), or OmegaConf's own."""
    from omegaconf._utils import OmegaConfDumper, get_omega_conf_dumper

    if not getattr(yaml, "__with_libyaml__", False):
        return get_omega_conf_dumper()

    class CDumper(yaml.CDumper):  # type: ignore[misc,name-defined]
        pass

    CDumper.add_representer(str, OmegaConfDumper.str_representer)
    return CDumper


def _c_safe(v: Any) -> bool:
    """Data both emitters write alike: printable ASCII strings, keys non-empty and short (libyaml and PyYAML
    differ on line breaks, some non-ASCII characters, empty and long keys)."""
    t = type(v)
    if t is str:
        return v.isascii() and v.isprintable()
    if t is dict:
        return all((type(k) is not str or 0 < len(k) <= 100) and _c_safe(k) and _c_safe(x) for k, x in v.items())
    if t is list:
        return all(_c_safe(x) for x in v)
    return True


def _entry(path: tuple[Any, ...], key: Any, value: Any) -> str:
    """The lines of ``{key: value}`` nested under the keys ``path`` (as in ``{p0: {p1: {key: value}}}``)."""
    ck = (path, repr((key, value)))  # repr is exact for plain data: types, float bits, key order
    text = _cache.get(ck)
    if text is None:
        if type(value) is dict and value:  # a mapping: its head line, then its entries, each cached on its own
            sub = (*path, key)
            head = _head(path, key)
            if head is None:  # a key not on one line: the entry at once
                return _lines(path, {key: value})
            text = head + "".join(_entry(sub, k, v) for k, v in value.items())
        else:
            text = _lines(path, {key: value})
        if len(_cache) >= _MAX:
            _cache.clear(), _heads.clear()
        _cache[ck] = text
    return text


def _head(path: tuple[Any, ...], key: Any) -> Optional[str]:
    """The line ``<key>:`` (indented under ``path``) that opens a nested mapping; None if the key takes more."""
    ck = (path, repr(key))
    if ck not in _heads:
        line = _lines(path, {key: None})
        _heads[ck] = line[: -len(" null\n")] + "\n" if line.endswith(": null\n") and line.count("\n") == 1 else None
    return _heads[ck]


def _lines(path: tuple[Any, ...], value: Any) -> str:
    """The YAML of ``value`` nested under the keys ``path``, less the lines of those keys."""
    for k in reversed(path):
        value = {k: value}
    return _dump(value).split("\n", len(path))[-1]


def render(data: Any) -> str:
    """``yaml.dump`` of ``data`` (plain data: what ``OmegaConf.to_container`` gives) as OmegaConf writes it."""
    if type(data) is not dict or not data or not _plain(data):
        return _dump(data)
    return "".join(_entry((), k, v) for k, v in data.items())


def config_yaml(cfg: Container, resolve: bool = False) -> str:
    """``OmegaConf.to_yaml(cfg, resolve=resolve)``, the same text, cheaper when its entries were rendered before."""
    return render(OmegaConf.to_container(cfg, resolve=resolve, enum_to_str=True))
