"""One message style across the package (issue 23 item 10).

An error for bad input reads ``WHERE: WHAT: Expect: ... Actual: ...`` or is a
plain sentence saying what to do next (docs/jobs.md, "Reading error
messages").  This walks every string literal of distnet's source, outside
the TF1 front end (``distnet/compat``, which keeps TensorFlow's own wording
where it repeats a TensorFlow error), for the older forms, so a new one fails
here instead of reaching a user.
"""
import ast
import re
from pathlib import Path

import pytest

import distnet

PACKAGE = Path(distnet.__file__).parent

# The older forms.  An unknown name listing its choices ("unknown loss 'x';
# expected one of [...]", "unknown key; did you mean ...? expected one of: ...")
# is the documented exception: it names the problem and the choices at once.
OLD_FORMS = [
    ("'X must be Y, got Z'", re.compile(r"\bmust be .*, got\b")),
    ("'expected Y, got Z'", re.compile(r"\bexpected .*, got\b", re.I)),
    ("'expected Y, found Z'", re.compile(r"\bexpected .*, found\b", re.I)),
    ("'expected Y. Actual: Z'", re.compile(r"\bexpected [^;]*\. Actual:", re.I)),
    ("'Z; expected Y'", re.compile(r"; expected (?!.*\bone of\b)", re.I)),
]


def _text(node: ast.AST) -> str | None:
    """A string literal's text, an f-string's with ``{}`` for each field."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and _text(body[0].value) is not None:
                ids.add(id(body[0].value))
    return ids


def old_forms_in(source: str) -> list[tuple[int, str, str]]:
    """``(line, form, text)`` of each string literal in ``source`` using an older form."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    # The parts of an f-string are literals too; the whole string is checked instead.
    skip |= {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        text = _text(node)
        if text is None:
            continue
        for form, pattern in OLD_FORMS:
            if pattern.search(text):
                found.append((node.lineno, form, text))
    return found


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "compat" not in p.relative_to(PACKAGE).parts)


def test_the_walk_sees_the_package():
    files = _sources()
    names = {p.relative_to(PACKAGE).as_posix() for p in files}
    # The readers the sweep converted are among the files walked, the TF1 front end is not.
    assert {"data/idx.py", "data/hdf5_format.py", "checkpoint/reader.py", "jobs/config.py"} <= names
    assert not any(n.startswith("compat/") for n in names)
    assert len(files) > 100


def test_no_message_in_an_older_form():
    offenders = []
    for path in _sources():
        for line, form, text in old_forms_in(path.read_text(encoding="utf-8")):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {form}: {text[:100]!r}")
    assert not offenders, ("messages in an older form; write 'WHERE: Expect: ... Actual: ...' "
                           "or say what to do:\n" + "\n".join(offenders))


@pytest.mark.parametrize("source", [
    'raise ValueError(f"decay_steps must be > 0, got {n}")',
    'raise ValueError(f"rate: expected a float in [0, 1), got {rate!r}")',
    'raise DataError(f"{where}: labels: expected values in [0, {k}), "\n'
    '                f"found {v} at row {r}")',
    'raise DTypeError(f"{op}: expected a floating tensor. Actual: {t.dtype}")',
    'raise ValueError(f"schedule returned {v!r}; expected a float")',
    'msg = "file: Expected an HDF5 file, found a directory"',
])
def test_the_walk_finds_each_older_form(source):
    assert old_forms_in(source), source


@pytest.mark.parametrize("source", [
    'raise ValueError(f"decay_steps: Expect: an int > 0 Actual: {n}")',
    'raise DataError(f"{where}: labels: Expect: values in [0, {k}) "\n'
    '                f"Actual: {v} at row {r}")',
    'raise InvalidArgumentError(f"unknown loss {name!r}; expected a callable or one of {names}")',
    'raise HostfileError(f"hostfile {p!r} lists no host; write one host:slots line per machine")',
    'def f():\n    """Raises: naming what was expected, found in the file, got from it."""\n',
    'def f():\n    """Raises ValueError: must be > 0, got 0."""\n',
])
def test_the_walk_passes_the_current_forms(source):
    assert old_forms_in(source) == []
