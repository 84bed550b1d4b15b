"""The tables of ``docs/jobs.md`` that list the components, the keys and the strategies.

Written from :mod:`distnet.registry` (a component kind), :mod:`distnet.jobs.schema`
(a plain section's keys: ``<!-- registry: train -->``) and the strategies'
own option declarations (``<!-- registry: strategy -->``).  Each table sits
between two marker lines that name what it lists::

    <!-- registry: optimizer -->
    | name | keys (default) | update (TF1) |
    ...
    <!-- end registry -->

Rewrite them after adding or changing a component (``tests/test_registry.py``
fails until then)::

    python -m distnet.jobs.registry_docs docs/jobs.md            # rewrite in place
    python -m distnet.jobs.registry_docs --check docs/jobs.md    # exit 1 if out of date
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from distnet import registry
from distnet.registry import Component, Option

__all__ = ["render", "render_section", "render_strategies", "update", "main"]

_BLOCK = re.compile(r"(<!-- registry: (\w+) -->\n)(.*?)(<!-- end registry -->)", re.S)

# Per kind: the table's heading, and what the component's doc says.
_HEADINGS = {
    "layer": ("type", "keys (default)", "what it does"),
    "activation": ("name", "", "what it computes"),
    "initializer": ("name", "parameters (default)", "what it gives"),
    "regularizer": ("type", "parameters", "the term added to the loss"),
    "optimizer": ("name", "keys (default)", "update"),
    "schedule": ("type", "keys (default)", "learning rate at `step` (`lr` is `optimizer.learning_rate`)"),
    "loss": ("type", "", "per sample, averaged over the batch"),
}


def _value(value: Any) -> str:
    """A default as it is written in a job file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _option(opt: Option) -> str:
    """`` `key` (default): doc, range``."""
    if opt.required:
        default = " (required)"
    elif opt.default is None:
        default = ""
    elif isinstance(opt.default, str):
        default = f" (`{_value(opt.default)}`)"
    else:
        default = f" ({_value(opt.default)})"
    detail = ", ".join(part for part in (opt.doc, opt.range_text()) if part)
    return f"`{opt.name}`{default}" + (f": {detail}" if detail else "")


def _name(c: Component) -> str:
    also = ", ".join(f'`"{a}"`' for a in c.aliases)
    return f'`"{c.name}"`' + (f" (also {also})" if also else "")


def _groups(components: tuple[Component, ...]) -> tuple[list[str], list[str]]:
    """Groups every component has (said once below the table) and those only some have."""
    seen: list[str] = []
    for c in components:
        for opt in c.options:
            if opt.group and opt.group not in seen:
                seen.append(opt.group)
    everywhere = [g for g in seen if all(any(o.group == g for o in c.options) for c in components)]
    return everywhere, [g for g in seen if g not in everywhere]


def render(kind: str) -> str:
    """The Markdown that documents every component of ``kind``."""
    components = registry.components(kind)
    everywhere, some = _groups(components)
    first, keys, what = _HEADINGS[kind]
    if keys:
        lines = [f"| {first} | {keys} | {what} |", "|---|---|---|"]
    else:
        lines = [f"| {first} | {what} |", "|---|---|"]
    for c in components:
        own = [_option(o) for o in c.options if not o.group]
        own += [f"and the {g} keys" for g in some if any(o.group == g for o in c.options)]
        if keys:
            lines.append(f"| {_name(c)} | {'; '.join(own)} | {c.doc} |")
        else:
            lines.append(f"| {_name(c)} | {c.doc} |")
    for group in everywhere:
        options = _group_options(components, group)
        lines += ["", f"Every {kind} also takes " + "; ".join(_option(o) for o in options) + "."]
    for group in some:
        members = [c for c in components if any(o.group == group for o in c.options)]
        lines += ["", f"The {group} keys ({', '.join(f'`{c.name}`' for c in members)}):", "",
                  "| key | values | default |", "|---|---|---|"]
        for opt in _group_options(members, group):
            default = "required" if opt.required else ("none" if opt.default is None else
                                                       f"`{_value(opt.default)}`")
            detail = ", ".join(part for part in (opt.doc, opt.range_text()) if part)
            lines.append(f"| `{opt.name}` | {detail} | {default} |")
    return "\n".join(lines) + "\n"


def _group_options(components: list[Component] | tuple[Component, ...], group: str) -> list[Option]:
    out: list[Option] = []
    for c in components:
        for opt in c.options:
            if opt.group == group and all(o.name != opt.name for o in out):
                out.append(opt)
    return out


def _default(key: Option) -> str:
    shown = getattr(key, "shown", "")
    if shown:
        return shown
    return "none" if key.default is None else f"`{_value(key.default)}`"


def _meaning(opt: Option) -> str:
    extra = opt.range_text()
    return opt.doc + (f" ({extra})" if extra else "")


def render_section(name: str) -> str:
    """The Markdown table of a plain section's keys (:data:`distnet.jobs.schema.SECTIONS`)."""
    from distnet.jobs.schema import SECTIONS

    lines = ["| key | meaning | default |", "|---|---|---|"]
    lines += [f"| `{k.name}` | {_meaning(k)} | {_default(k)} |" for k in SECTIONS[name].keys]
    return "\n".join(lines) + "\n"


def render_strategies() -> str:
    """Every strategy and its own options (the keys of ``[dist] strategy = {type = ..., ...}``)."""
    from distnet.distributed.strategies import all_strategies

    lines = []
    for name, cls in all_strategies().items():
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        lines += [f'`"{name}"`: {summary}', ""]
        if not cls.options:
            lines += ["No options.", ""]
            continue
        lines += ["| option | meaning | default |", "|---|---|---|"]
        for opt in cls.options:
            default = cls.job_defaults.get(opt.name, opt.default)
            lines.append(f"| `{opt.name}` | {_meaning(opt)} | "
                         f"{'none' if default is None else f'`{_value(default)}`'} |")
        lines.append("")
    return "\n".join(lines)


def update(text: str) -> str:
    """``text`` with every marked table rewritten from the registry.

    Raises:
        ValueError: a marker names no kind the registry has.
    """
    def block(m: re.Match) -> str:
        from distnet.jobs.schema import SECTIONS

        kind = m.group(2)
        if kind == "strategy":
            return m.group(1) + render_strategies() + m.group(4)
        if kind in SECTIONS:
            return m.group(1) + render_section(kind) + m.group(4)
        if kind not in registry.KINDS:
            raise ValueError(f"<!-- registry: {kind} -->: Expect: one of {list(registry.KINDS)}, "
                             f"{list(SECTIONS)} or 'strategy' Actual: {kind!r}")
        return m.group(1) + render(kind) + m.group(4)

    return _BLOCK.sub(block, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distnet.jobs.registry_docs",
                                     description="Rewrite the component tables of a Markdown file.")
    parser.add_argument("file", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the tables are out of date")
    args = parser.parse_args(argv)
    text = args.file.read_text(encoding="utf-8")
    new = update(text)
    if args.check:
        if new != text:
            print(f"{args.file}: the component tables are out of date; run "
                  f"python -m distnet.jobs.registry_docs {args.file}", file=sys.stderr)
            return 1
        return 0
    if new != text:
        tmp = args.file.with_name(args.file.name + ".tmp")
        tmp.write_text(new, encoding="utf-8")
        tmp.replace(args.file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
