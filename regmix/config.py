"""YAML presets validated into frozen, typed dataclasses.

`load_config(Cls, path)` reads YAML and builds `Cls`; `from_dict(Cls, data, where)` builds it from a
mapping. Nested dataclasses, `list[...]`, `tuple[...]`, `dict[str, ...]`, `X | None` and `Literal`
fields are checked; an unknown key, a missing required key or a wrong type raises RegmixError naming
the file and the dotted field (`quick.yaml: sweep.n_proxies: expected int, got 'ten'`).
Defaults live in the dataclass, nowhere else.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from regmix.errors import RegmixError

T = TypeVar("T")


class Loader(yaml.SafeLoader):
    """`yaml.safe_load` that reads `25.0e9`, `19e9` and `1.2E+10` as numbers, as YAML 1.2 and JSON do.

    PyYAML keeps YAML 1.1's float rule, which needs a dot and a signed exponent, so it reads
    `25.0e9` as the string '25.0e9'.
    Aliases are refused (a "billion laughs" file fails at once) and so are duplicate keys.
    """

    max_depth = 64  # nesting deeper than any config needs is refused before Python's recursion limit

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", event.start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > self.max_depth:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {self.max_depth} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str):
    """YAML (or JSON) text to data, with the numbers people write (see `Loader`)."""
    return yaml.load(text, Loader=Loader)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing, unreadable or non-mapping file is a RegmixError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegmixError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RegmixError(f"{path}: cannot read: {err}") from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RegmixError(f"{path}:{where} invalid YAML: {problem}") from None
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError) as err:
        # PyYAML's constructors raise these for a bad `!!float x`, `2001-02-30`, `!!timestamp x`, a list as a key
        raise RegmixError(f"{path}: invalid YAML: {type(err).__name__}: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RegmixError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


PRESETS = Path(__file__).parent / "configs"


def preset_path(name: str | Path) -> Path:
    """A config file: a path that exists, or the name of a preset shipped in regmix/configs (`demo`)."""
    path = Path(name)
    if path.exists():
        return path
    shipped = PRESETS / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if path.parent == Path(".") and shipped.exists():
        return shipped
    known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
    raise RegmixError(f"{name}: no such config file or preset (presets: {known})")


def load_tree(path: str | Path, _seen: tuple = ()) -> dict:
    """A YAML mapping; `extends: OTHER.yaml` (next to it, or a preset) is loaded first and deep-merged under it."""
    path = Path(path)
    data = load_yaml(path)
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise RegmixError(f"{path}: extends: expected a file name, got {_show(base)}")
    parent = path.parent / base if (path.parent / base).exists() else preset_path(base)
    if parent.resolve() in _seen:
        raise RegmixError(f"{path}: extends: '{base}' extends itself")
    return deep_merge(load_tree(parent, (*_seen, path.resolve())), data)


def deep_merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(cls: type[T], path: str | Path, overrides: dict | None = None) -> T:
    """Load YAML at `path` (a file or a preset name) into dataclass `cls`, dotted-key overrides applied first."""
    path = preset_path(path)
    data = load_tree(path)
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    return from_dict(cls, data, where=str(path))


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    """Set `data["a"]["b"] = value` for `dotted == "a.b"`, creating mappings on the way."""
    parts = dotted.split(".")
    for part in parts[:-1]:
        data = data.setdefault(part, {})
    data[parts[-1]] = value


def from_dict(cls: type[T], data: Any, where: str = "config", field: str = "") -> T:
    """Build dataclass `cls` from a mapping, checking keys and types recursively."""
    label = f"{where}: {field}" if field else where
    if not isinstance(data, dict):
        raise RegmixError(f"{label}: expected a mapping, got {_show(data)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise RegmixError(
            f"{where}: unknown key '{_join(field, str(unknown[0]))}' (known: {', '.join(fields)})"
        )
    values = {}
    for name, f in fields.items():
        path = _join(field, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RegmixError(f"{where}: missing required key '{path}'")
            continue
        values[name] = _convert(hints[name], data[name], where, path)
    try:
        return cls(**values)
    except RegmixError:
        raise
    except (TypeError, ValueError, ArithmeticError) as err:
        raise RegmixError(f"{label}: {err}") from None


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) to plain YAML/JSON-ready data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _convert(tp: Any, value: Any, where: str, path: str) -> Any:
    origin = get_origin(tp)
    args = get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where, path)
            except RegmixError as err:
                errors.append(err)
        raise errors[0] if len(errors) == 1 else RegmixError(
            f"{where}: {path}: expected {_name(tp)}, got {_show(value)}"
        )
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise RegmixError(f"{where}: {path}: expected one of {choices}, got {_show(value)}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise RegmixError(f"{where}: {path}: expected a list, got {_show(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise RegmixError(f"{where}: {path}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, where, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_convert(item, v, where, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise RegmixError(f"{where}: {path}: expected a mapping, got {_show(value)}")
        key_t, val_t = args if args else (Any, Any)
        return {
            _convert(key_t, k, where, f"{path}.{k}"): _convert(val_t, v, where, f"{path}.{k}")
            for k, v in value.items()
        }
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RegmixError(f"{where}: {path}: expected a number, got {_show(value)}")
        try:
            return float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise RegmixError(f"{where}: {path}: number too large, got {_show(value)}") from None
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise RegmixError(f"{where}: {path}: expected an integer, got {_show(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise RegmixError(f"{where}: {path}: expected true or false, got {_show(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise RegmixError(f"{where}: {path}: expected a string, got {_show(value)}")
        return value
    if tp is Path:
        if not isinstance(value, str):
            raise RegmixError(f"{where}: {path}: expected a path, got {_show(value)}")
        return Path(value)
    return value


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
