"""The options framework: a config field declared once carries its command-line form, its role and its checks.

A field carries its command-line form in its metadata (:func:`opt`): help, choices (the constants it is validated
against), spelling (``frames_train`` is ``--frames-train`` unless told otherwise), deprecated spellings, and
whether it is a positional argument. ``fda.cli`` builds every command's options from a config class, so the name,
the type and the default are written in the config only. A command that combines stages holds their configs
(:func:`nested`): ``fda sweep`` holds a :class:`fda.config.PreprocessConfig` and a budget, so a new preprocess or
train option reaches it with no new code. The checks here raise :class:`fda.errors.ConfigError` with a one-line
message naming the option (as its declaration spells it), the value and the fix.
"""

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from fda.errors import ConfigError


def flag(name: str) -> str:
    """The CLI option for a config field: ``frames_train`` -> ``--frames-train``, ``n`` -> ``-n``."""
    return ("-" if len(name) == 1 else "--") + name.replace("_", "-")


# --- declaring options --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Opt:
    """How one config field appears on the command line (kept in the field's metadata under ``"cli"``).

    Attributes:
        help: the help line.
        choices: the allowed values, the same constant ``__post_init__`` validates against.
        flag: the option's spelling when it is not :func:`flag` of the field name.
        aliases: old spellings, still accepted (hidden) with a deprecation warning.
        argument: a positional argument (a tuple-typed one takes any number of values).
        folder: the value names a folder (an existing file there is a usage error).
        auto: the option also takes the word ``auto`` (the field's ``None``: the stage chooses and records it).
        role: what the value is to the stage that reads it, for the name lists derived from it (:func:`fields_with`):
            ``fda preprocess``: ``sample`` (decides what a sample holds), ``sample-when-on`` (the same, recorded
            by its value only when not at its default, so older shard sets keep their fingerprints), ``shard-set``
            (which splits are written and how they are cut into shards), ``sample-unless-diff`` (the mask rule and
            its parameters: the same, recorded only when the rule is not ``diff``); ``fda train``: ``run`` (an
            experiment sets it for each run itself).
        resume: ``fixed`` (``fda train`` refuses to resume with another value) or ``ignored`` (where the run lives,
            not an option of the run).
    """

    help: str
    choices: Optional[Tuple[str, ...]] = None
    flag: Optional[str] = None
    aliases: Tuple[str, ...] = ()
    argument: bool = False
    folder: bool = False
    auto: bool = False
    role: str = ""
    resume: str = ""


@dataclass(frozen=True)
class Nest:
    """A config held by another one (metadata ``"nest"``): its fields become the outer command's options.

    Attributes:
        exclude: fields the outer config sets itself (no option; the nested default's value stays); a dotted name
            (``train.epochs``) reaches into a config nested in this one.
        aliases: deprecated spellings per field, replacing the field's own (which may mean something else here).
        help: help lines per field, replacing the field's own (the same option reads differently in this command).
        only: when given, the only fields that become options (the rest keep the nested default's values); a dotted
            name reaches deeper, as in ``exclude``.
        flat: the held config is a part of the outer one, not a stage it composes: records
            (:func:`options_record`) show its fields in place, as the outer config's own.
    """

    exclude: Tuple[str, ...] = ()
    aliases: Mapping[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)
    help: Mapping[str, str] = dataclasses.field(default_factory=dict)
    only: Tuple[str, ...] = ()
    flat: bool = False

    def keeps(self, name: str) -> bool:
        """Whether field ``name`` of the held config (or some field of a config nested under it) is an option."""
        chosen = not self.only or name in self.only or any(o.startswith(name + ".") for o in self.only)
        return chosen and name not in self.exclude


def opt(default: Any = dataclasses.MISSING, help: str = "", **spec: Any) -> Any:
    """A dataclass field with its CLI form (:class:`Opt`); no ``default`` makes a required option or argument."""
    meta = {"cli": Opt(help, **spec)}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def nested(default: Any = dataclasses.MISSING, *, exclude: Sequence[str] = (),
           aliases: Optional[Mapping[str, Tuple[str, ...]]] = None, help: Optional[Mapping[str, str]] = None,
           only: Sequence[str] = (), flat: bool = False) -> Any:
    """A field holding another (frozen) config; ``default`` is the instance whose values the options default to
    (:class:`Nest` gives the meaning of the rest)."""
    meta = {"nest": Nest(tuple(exclude), dict(aliases or {}), dict(help or {}), tuple(only), flat)}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class CliField:
    """One option or argument of a command, found by :func:`cli_fields`.

    Attributes:
        path: field names from the command's config down to this field (``("budget", "train", "lr")``).
        type: the field's annotation.
        default: its default (from the nested default instance, if any), or ``dataclasses.MISSING``.
        spec: its :class:`Opt`.
        flag: its spelling (``--lr``, ``-k``).
        aliases: its deprecated spellings in this command.
        record: where :func:`options_record` puts it: ``path`` without the configs nested ``flat``.
    """

    path: Tuple[str, ...]
    type: Any
    default: Any
    spec: Opt
    flag: str
    aliases: Tuple[str, ...]
    record: Tuple[str, ...]

    @property
    def dest(self) -> str:
        """The keyword the command receives: the path joined with ``__`` (``budget__train__lr``)."""
        return "__".join(self.path)


def _inner_nest(outer: "Nest", f: "dataclasses.Field[Any]") -> "Nest":
    """The nesting of field ``f``'s config, with the exclusions the outer config names by dotted path added
    (``exclude=("train.epochs",)`` on a held :class:`Budget` drops its template's ``--epochs``) and its dotted
    inclusions, if any, in place of the held config's own."""
    own: Nest = f.metadata["nest"]

    def deeper(names: Tuple[str, ...]) -> Tuple[str, ...]:
        return tuple(e.split(".", 1)[1] for e in names if e.startswith(f.name + "."))
    exclude, only = deeper(outer.exclude), () if f.name in outer.only else deeper(outer.only)
    return dataclasses.replace(own, exclude=own.exclude + exclude, only=only or own.only) if exclude or only else own


def cli_fields(cls: type, defaults: Any = None, path: Tuple[str, ...] = (), nest: Nest = Nest(),
               record: Tuple[str, ...] = ()) -> List[CliField]:
    """Every option and argument of ``cls``, in field order, nested configs flattened in place.

    Args:
        cls: a config dataclass whose fields carry :func:`opt` or :func:`nested` metadata.
        defaults: an instance of ``cls`` whose values are the defaults (None: the fields' own defaults).
        path: the field names leading to ``cls``.
        nest: how ``cls`` is nested (its excluded or only fields, alias and help overrides).
        record: where :func:`options_record` puts ``cls``'s fields.
    """
    out: List[CliField] = []
    hints = typing.get_type_hints(cls)  # the annotations as types, also under "from __future__ import annotations"
    for f in dataclasses.fields(cls):
        if not nest.keeps(f.name):
            continue
        default = getattr(defaults, f.name) if defaults is not None else _field_default(f)
        if "nest" in f.metadata:
            inner = None if default is dataclasses.MISSING else default
            inner_nest = _inner_nest(nest, f)
            out += cli_fields(hints[f.name], inner, path + (f.name,), inner_nest,
                              record if inner_nest.flat else record + (f.name,))
            continue
        spec = f.metadata.get("cli")
        if spec is None:
            raise TypeError(f"{cls.__name__}.{f.name} has no opt(...) metadata")
        aliases = nest.aliases.get(f.name, spec.aliases)
        if f.name in nest.help:
            spec = dataclasses.replace(spec, help=nest.help[f.name])
        out.append(CliField(path + (f.name,), hints[f.name], default, spec, spec.flag or flag(f.name), tuple(aliases),
                            record + (f.name,)))
    return out


def _field_default(f: "dataclasses.Field[Any]") -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def from_options(cls: type, values: Mapping[str, Any], base: Any = None, prefix: str = "") -> Any:
    """Build ``cls`` from option values keyed by :attr:`CliField.dest`; a field without a value keeps its default.

    Nested configs are built first (their own checks run, then the outer config's); a nested field with a default
    instance starts from that instance, so its excluded fields keep the values the outer config chose.

    Raises:
        ConfigError: a value fails its config's check.
    """
    kwargs: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if "nest" in f.metadata:
            inner = getattr(base, f.name) if base is not None else _field_default(f)
            inner = None if inner is dataclasses.MISSING else inner
            kwargs[f.name] = from_options(typing.get_type_hints(cls)[f.name], values, inner, key + "__")
        elif key in values:
            kwargs[f.name] = values[key]
    return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)


def options_record(cfg: Any) -> Dict[str, Any]:
    """The values of ``cfg``'s command-line options, nested as the configs are (for an experiment's json), but a
    config nested ``flat`` (a part of its holder, as the mask options are of preprocess) shows its fields in place:
    the fields a composed command sets itself (excluded from its options) are left out, so the record shows only
    what the user chose or left at its default."""
    out: Dict[str, Any] = {}
    for field in cli_fields(type(cfg), cfg):
        value: Any = cfg
        for name in field.path:
            value = getattr(value, name)
        node = out
        for name in field.record[:-1]:
            node = node.setdefault(name, {})
        node[field.record[-1]] = list(value) if isinstance(value, tuple) else value
    return out


def flat_fields(cfg: Any) -> Dict[str, Any]:
    """``dataclasses.asdict`` with nested configs' fields in place of the nested field (the flat record an
    ``fda eval`` report or ``embeddings.json`` keeps, as before the model options were one nested config)."""
    out: Dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if "nest" in f.metadata:
            out.update(flat_fields(value))
        else:
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return out


# --- reading the declarations -----------------------------------------------------------------------------------

def leaf_fields(cls: type) -> List["dataclasses.Field[Any]"]:
    """``cls``'s option fields in field order, those of nested configs in place of the nested field (their names
    are the flat names records and name lists use: ``tau``, not ``mask.tau``)."""
    out: List[dataclasses.Field[Any]] = []
    hints: Optional[Dict[str, Any]] = None
    for f in dataclasses.fields(cls):
        if "nest" in f.metadata:
            hints = hints or typing.get_type_hints(cls)
            out += leaf_fields(hints[f.name])
        else:
            out.append(f)
    return out


def spelling(cls: Any, name: str) -> str:
    """How the command line spells field ``name`` of config ``cls`` (a class or an instance; a field of a nested
    config by its own name): its declared flag, else :func:`flag` of the name; a positional argument in capitals
    (``SHARDS_DIR``). A name that is not a field of ``cls`` is spelled by :func:`flag`."""
    cls = cls if isinstance(cls, type) else type(cls)
    f = None
    if dataclasses.is_dataclass(cls):  # its own field first, else a nested config's
        f = {f.name: f for f in dataclasses.fields(cls)}.get(name) or {f.name: f for f in leaf_fields(cls)}.get(name)
    spec = f.metadata.get("cli") if f is not None else None
    if spec is None:
        return flag(name)
    if spec.argument:
        return name.upper()
    return spec.flag or flag(name)


def fields_with(cls: type, **meta: Any) -> Tuple[str, ...]:
    """The names of ``cls``'s fields whose :class:`Opt` has every given value (``role="sample"``), in field order,
    those of nested configs in place (:func:`leaf_fields`); a tuple value matches any of its items
    (``role=("sample", "shard-set")``)."""
    def matches(spec: Optional[Opt]) -> bool:
        return spec is not None and all(getattr(spec, k) in (v if isinstance(v, tuple) else (v,))
                                        for k, v in meta.items())
    return tuple(f.name for f in leaf_fields(cls) if matches(f.metadata.get("cli")))


# --- checks shared by several configs -----------------------------------------------------------------------------

def require(ok: bool, cfg: Any, name: str, value: Any, need: str) -> None:
    """Raise ``<option> must be <need>, got <value>`` unless ``ok``; the option as ``cfg`` declares it
    (:func:`spelling`).

    Raises:
        ConfigError: ``ok`` is false.
    """
    if not ok:
        raise ConfigError(f"{spelling(cfg, name)} must be {need}, got {value!r}")


def choice(cfg: Any, name: str, value: Any, choices: Sequence[str]) -> None:
    """``value`` (of ``cfg``'s field ``name``) is one of ``choices``."""
    require(value in choices, cfg, name, value, "one of " + ", ".join(choices))


def positive(cfg: Any, *names: str) -> None:
    """Each of ``cfg``'s fields ``names`` is an integer >= 1."""
    for name in names:
        value = getattr(cfg, name)
        require(isinstance(value, int) and value >= 1, cfg, name, value, "an integer >= 1")


def parse_floats(value: str, option: str) -> Tuple[float, ...]:
    """Turn ``"0,12.5,25"`` into ``(0.0, 12.5, 25.0)`` (order kept, repeats dropped)."""
    try:
        parts = tuple(dict.fromkeys(float(p) for p in str(value).split(",") if p.strip()))
    except ValueError:
        parts = ()
    if not parts:
        raise ConfigError(f"{option} must be a comma list of numbers (e.g. 0,12.5,25), got {value!r}")
    return parts


def parse_seeds(value: str) -> Tuple[int, ...]:
    """Turn ``"0,1,2"`` into ``(0, 1, 2)``: integers >= 0, repeats dropped."""
    parts = [p.strip() for p in str(value).split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise ConfigError(f"--seeds must be a comma list of integers >= 0 (e.g. 0,1,2), got {value!r}")
    return tuple(dict.fromkeys(int(p) for p in parts))


def parse_names(value: str, option: str, choices: Sequence[str]) -> Tuple[str, ...]:
    """Turn ``"motion,null"`` into ``("motion", "null")`` (order kept, repeats dropped), each one of ``choices``."""
    parts = tuple(dict.fromkeys(p.strip() for p in str(value).split(",") if p.strip()))
    bad = [p for p in parts if p not in choices]
    if not parts or bad:
        raise ConfigError(f"{option} must be a comma list of {', '.join(choices)}, got {value!r}")
    return parts


def choices_help(intro: str, described: Mapping[str, str]) -> str:
    """``intro: a (what a is), b, c (what b and c are).``: each choice with its words in brackets, written once after
    a run of choices that share them; a choice with no words stands alone."""
    names = list(described)
    parts = [name if not described[name] or (i + 1 < len(names) and described[names[i + 1]] == described[name])
             else f"{name} ({described[name]})" for i, name in enumerate(names)]
    return f"{intro}: {', '.join(parts)}."


def name_list(field: str, choices: Sequence[str]) -> Any:
    """A property: the comma list in ``field`` as a tuple (:func:`parse_names`), in the order given."""
    return property(lambda self: parse_names(getattr(self, field), flag(field), choices),
                    doc=f"The values of {flag(field)}, in the order given.")
