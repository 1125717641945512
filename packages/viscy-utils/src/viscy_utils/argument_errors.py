"""One-line messages for configurations and command lines that do not parse, naming the closest valid key.

jsonargparse reports an unknown key as a usage text of dozens of lines followed by, e.g.::

    error: Parser key "data":
      Does not validate against any of the Union subtypes
      ...
        - Problem with given class_path 'viscy_data.triplet.TripletDataModule':
            Option 'batchsize' is not accepted

:func:`describe_argument_error` turns such a message into one line with a suggestion:
``data (viscy_data.triplet.TripletDataModule) has no argument 'batchsize'; did you mean 'batch_size'?``
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Iterable

__all__ = ["closest", "describe_argument_error"]

_CLI_KEYS = ("config", "print_config", "seed_everything", "trainer", "model", "data", "optimizer", "lr_scheduler")
"""Top-level keys of every Lightning CLI subcommand, besides the arguments of the trainer's method."""

_NOT_ACCEPTED = re.compile(r"Problem with given class_path '([\w.]+)':\s*Option '([\w.]+)' is not accepted")
_SUBCOMMAND_OPTION = re.compile(r"Subcommand '(\w+)' does not accept option '([\w.]+)'")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: --([\w.]+)")
_INVALID_SUBCOMMAND = re.compile(r"argument subcommand: invalid choice: '([^']*)' \(choose from (.*)\)")
_PARSER_KEY = re.compile(r'Parser key "([\w.]+)"')


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """Return the candidate closest to ``name`` (a likely typo of it), or None.

    Parameters
    ----------
    name : str
        The unknown name.
    candidates : iterable of str
        Valid names.

    Returns
    -------
    str or None
        The closest candidate with a similarity ratio of at least 0.6.
    """
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    suggestion = closest(name, candidates)
    return f"; did you mean {suggestion!r}?" if suggestion is not None else ""


def _parameters(function: Callable) -> list[str]:
    """Named parameters of ``function`` (no ``self``, ``*args`` or ``**kwargs``)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in inspect.signature(function).parameters.values() if p.kind in kinds and p.name != "self"]


def _init_parameters(cls: type) -> list[str]:
    """Arguments of ``cls`` and of the base classes its ``**kwargs`` go to."""
    return sorted({parameter for base in cls.__mro__[:-1] for parameter in _parameters(base.__init__)})


def _class_parameters(class_path: str) -> list[str]:
    """Arguments of the class named ``class_path`` (none when it cannot be imported)."""
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return []
    return _init_parameters(cls)


def _subcommand_keys(subcommand: str, trainer_class: type) -> dict[str, list[str]]:
    """Return the valid keys of a subcommand: ``""`` -> top-level keys, ``"trainer"`` -> trainer arguments."""
    method = getattr(trainer_class, subcommand, None)
    top_level = [*_CLI_KEYS, *(_parameters(method) if method is not None else [])]
    return {"": top_level, "trainer": _init_parameters(trainer_class)}


def _unknown_key(subcommand: str, key: str, trainer_class: type) -> str:
    section, _, name = key.rpartition(".")
    suggestion = closest(name, _subcommand_keys(subcommand, trainer_class).get(section, []))
    if suggestion is None:
        return f"{subcommand} has no option {key!r}"
    return f"{subcommand} has no option {key!r}; did you mean {'.'.join(filter(None, (section, suggestion)))!r}?"


def describe_argument_error(message: str, subcommand: str | None, trainer_class: type) -> str:
    """Say in one line what is wrong with a configuration or command line, suggesting the key meant.

    Parameters
    ----------
    message : str
        jsonargparse's error message.
    subcommand : str or None
        The subcommand being parsed (``"fit"``...), when known.
    trainer_class : type
        The trainer class, whose ``__init__`` and subcommand methods define the valid keys.

    Returns
    -------
    str
        One line: the unknown key, where it is and the closest valid key when there is one;
        otherwise jsonargparse's message joined into one line.
    """
    if match := _NOT_ACCEPTED.search(message):
        class_path, name = match.groups()
        where = ".".join(_PARSER_KEY.findall(message[: match.start()])) or "the configuration"
        suggestion = _did_you_mean(name, _class_parameters(class_path))
        return f"{where} ({class_path}) has no argument {name!r}{suggestion}"
    if match := _SUBCOMMAND_OPTION.search(message):
        return _unknown_key(match.group(1), match.group(2), trainer_class)
    if (match := _UNRECOGNIZED.search(message)) and subcommand is not None:
        return _unknown_key(subcommand, match.group(1), trainer_class)
    if match := _INVALID_SUBCOMMAND.search(message):
        name, choices = match.group(1), re.findall(r"'([^']*)'", match.group(2))
        return f"{name!r} is not a subcommand{_did_you_mean(name, choices)} (subcommands: {', '.join(choices)})"
    return " ".join(line.strip() for line in message.splitlines() if line.strip())
