"""Experiment configs: a dataclass with OmegaConf dotlist overrides from the command line.

The dataclass is the only place a field is documented: its type, its default and one
trailing comment, which `--help` prints as written.
"""

import dataclasses
import difflib
import hashlib
import inspect
import io
import json
import sys
import tokenize
import typing

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """An override that does not fit the config dataclass."""


def config_from_cli(cls, argv=None, prog=None):
    """Build `cls` from the command-line overrides, or exit: 0 after `--help`, 2 on bad input.

    `argv` defaults to `sys.argv`. Both `python run_exp.py -- lr=0.1` and
    `marimo edit run_exp.py -- lr=0.1` (which drops the `--`) come here.
    """
    argv = sys.argv if argv is None else argv
    prog = prog or argv[0]
    tokens = list(argv[1:])
    if tokens[:1] == ["--"]:
        tokens = tokens[1:]
    if "--help" in tokens or "-h" in tokens:
        print(format_help(cls, prog))
        sys.exit(0)
    try:
        return parse_overrides(cls, tokens)
    except ConfigError as error:
        print(f"error: {error}\nRun `python {prog} --help` to list every field.", file=sys.stderr)
        sys.exit(2)


def parse_overrides(cls, tokens):
    """Return `cls()` with `key=value` tokens merged in; raise ConfigError on bad input.

    Values are parsed as YAML by OmegaConf, except for `str` fields, which keep the
    literal text: YAML would turn `run_name=1e3` into `1000.0` and `run_name=on` into `True`.
    `null` sets an Optional field to None.
    """
    types = field_types(cls)
    overrides = {}
    for token in tokens:
        key, value = _split_token(token, types)
        if key in overrides:
            raise ConfigError(f"{key} is given twice; keep one {key}=VALUE")
        overrides[key] = _parse_value(key, value, types[key])

    base = OmegaConf.structured(cls)
    for key, value in overrides.items():
        try:
            OmegaConf.update(base, key, value, merge=False)
        except OmegaConfBaseException as error:
            raise ConfigError(_type_message(key, tokens, types[key])) from error
    try:
        return OmegaConf.to_object(base)
    except ValueError as error:  # raised by the dataclass's own checks in __post_init__
        raise ConfigError(str(error)) from None


def _split_token(token, types):
    if token.startswith("-"):
        raise ConfigError(
            f"unexpected option {token!r}: overrides are written key=value, e.g. lr=0.01"
        )
    if "=" not in token:
        raise ConfigError(
            f"override {token!r} has no '=': write it as key=value, e.g. {token}=VALUE"
        )
    key, value = token.split("=", 1)
    if key not in types:
        close = difflib.get_close_matches(key, types, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown config key {key!r}.{hint} Valid keys: {', '.join(types)}"
        )
    return key, value


def _parse_value(key, text, field_type):
    if text == "null" and _is_optional(field_type):
        return None
    if base_type(field_type) is str:
        return text
    return OmegaConf.to_container(OmegaConf.from_dotlist([f"value={text}"]))["value"]


def _type_message(key, tokens, field_type):
    text = next(t.split("=", 1)[1] for t in reversed(tokens) if t.split("=", 1)[0] == key)
    choices = field_choices(field_type)
    if choices:
        message = f"invalid value for {key}: {text!r}; choose one of {', '.join(choices)}"
    else:
        message = f"invalid value for {key}: {text!r} is not of type {type_name(field_type)}"
    if base_type(field_type) is int and _is_whole_number(text):
        message += f". Write it as an integer: {key}={int(float(text))}"
    if typing.get_origin(base_type(field_type)) is list:
        message += f". Write a list in brackets: {key}=[{text}]"
    elif "," in text:
        message += (
            ". Each run takes one value per key; to vary a value over several runs,"
            " define a sweep in exp_sweeps.py"
        )
    return message


def _is_whole_number(text):
    try:
        return float(text).is_integer()
    except ValueError:
        return False


def field_types(cls, prefix=""):
    """Return {dotted key: type} for every leaf field, descending into nested dataclasses."""
    types = {}
    hints = typing.get_type_hints(cls, include_extras=False)
    for field in dataclasses.fields(cls):
        field_type = hints[field.name]
        if dataclasses.is_dataclass(field_type):
            types.update(field_types(field_type, f"{prefix}{field.name}."))
        else:
            types[f"{prefix}{field.name}"] = field_type
    return types


def _is_optional(field_type):
    return typing.get_origin(field_type) is typing.Union and type(None) in typing.get_args(field_type)


def _without_none(field_type):
    """Return the type inside Optional[...], or `field_type` itself."""
    if _is_optional(field_type):
        return next(t for t in typing.get_args(field_type) if t is not type(None))
    return field_type


def base_type(field_type):
    """Return the type inside Optional[...]; a Literal of strings counts as str."""
    field_type = _without_none(field_type)
    if _is_literal(field_type) and all(isinstance(c, str) for c in typing.get_args(field_type)):
        return str
    return field_type


def _is_literal(field_type):
    return typing.get_origin(_without_none(field_type)) is typing.Literal


def type_name(field_type):
    """Return a short readable name: int, float, str, Optional[int], Literal['a', 'b']."""
    if isinstance(field_type, type):
        return field_type.__name__
    if _is_literal(field_type):
        return "|".join(field_choices(field_type))
    return str(field_type).replace("typing.", "")


def field_comments(cls, prefix=""):
    """Return {dotted key: trailing comment} read from the source of `cls` and the
    dataclasses nested in it."""
    comments = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]):
            comments.update(field_comments(hints[field.name], f"{prefix}{field.name}."))
    for name, comment in _trailing_comments(cls).items():
        comments[f"{prefix}{name}"] = comment
    return comments


def _trailing_comments(cls):
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    comments, name = {}, None
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME and token.start[1] == 4 and name is None:
            name = token.string
        elif token.type == tokenize.COMMENT and name is not None:
            comments[name] = token.string.lstrip("#").strip()
        if token.type == tokenize.NEWLINE:
            name = None
    return comments


def format_help(cls, prog):
    """Return the `--help` text: usage, then one line per field with type, default and comment."""
    defaults = flatten(dataclasses.asdict(cls()))
    comments = field_comments(cls)
    rows = [
        (key, type_name(field_type), repr(defaults[key]), comments.get(key, ""))
        for key, field_type in field_types(cls).items()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        f"usage: python {prog} -- [key=value ...]",
        f"       marimo edit {prog} -- [key=value ...]",
        "",
        "Overrides are OmegaConf dotlist entries merged into the Config dataclass.",
        "Values are YAML (1e-3, true, null, [1, 2]); str fields keep the text as written.",
        "",
        "fields:",
    ]
    for key, type_text, default, comment in rows:
        lines.append(
            f"  {key:<{widths[0]}}  {type_text:<{widths[1]}}  {default:<{widths[2]}}  {comment}".rstrip()
        )
    return "\n".join(lines)


def flatten(values, prefix=""):
    """Return a nested dict as {dotted key: value}, the form MLflow params take."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_hash(config, ignore=("run_name", "sweep", "threads", "checkpoint_every", "max_requeues")):
    """Return a short hash of the fields that change results, to spot a run already done.

    The `ignore` fields are left out: they label or schedule a run but do not change
    its metrics.
    """
    values = {k: v for k, v in flatten(dataclasses.asdict(config)).items() if k not in ignore}
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_form(config):
    """Return a marimo form with one input per field, filled in from `config`.

    Submitted values go through the same parser as command-line overrides, so the form
    rejects what the CLI rejects, with the same message.
    """
    import marimo as mo

    cls = type(config)
    values = flatten(dataclasses.asdict(config))
    comments = field_comments(cls)
    elements, rows = {}, []
    for key, field_type in field_types(cls).items():
        name = key.replace(".", "__")  # a template placeholder cannot contain dots
        text = "null" if values[key] is None else str(values[key])
        choices = field_choices(field_type)
        if choices:
            elements[name] = mo.ui.dropdown(choices, value=text)
        else:
            elements[name] = mo.ui.text(value=text)
        rows.append(f"| `{key}` | {{{name}}} | {comments.get(key, '')} |")
    template = "| field | value | meaning |\n| --- | --- | --- |\n" + "\n".join(rows)

    def validate(value):
        try:
            config_from_form(cls, value or {})
        except ConfigError as error:
            return str(error)
        return None

    return mo.md(template).batch(**elements).form(submit_button_label="Run", validate=validate)


def config_from_form(cls, value):
    """Parse a submitted `config_form` value into `cls`; raise ConfigError on bad input."""
    tokens = []
    for name, text in value.items():
        if isinstance(text, list):  # a dropdown's raw value, as `validate` receives it
            text = text[0] if text else ""
        tokens.append(f"{name.replace('__', '.')}={text}")
    return parse_overrides(cls, tokens)


def field_choices(field_type):
    if field_type is bool:
        return ["True", "False"]
    if _is_literal(field_type) and not _is_optional(field_type):
        return [str(choice) for choice in typing.get_args(field_type)]
    return []
