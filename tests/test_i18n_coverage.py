"""No message for a person slips past the catalog: in the modules whose words a person
reads (the CLI, doctor, provision, the settings, bundles, the queue's and the reader's
errors, the demo, the kiosk), every printed line, every raised error and every doctor
answer is a `_()`/`ngettext()` call, never a bare string or an f-string.

tests/test_i18n.py then checks that every marked message has its Japanese translation;
together they are "a test fails on a message without a translation". Log records are
not looked at: the journal stays English.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
READER = REPO / "reader"

# What a person reads comes from these; the rest (the pure card core, the wire model,
# the queue's internals, the daemon's loop) speaks to logs, to the city or to developers.
PEOPLE_READ = [
    "cli", "technician", "config", "bundles", "kiosk", "feedback",
    "devtools/demo.py", "devtools/city_broker.py", "sync/endpoint.py", "sync/renewal.py",
    "transports", "sound",
    "queue/opening.py", "queue/export.py", "emulator/vpcd.py", "modes/rules.py",
]
# Raised for a developer (a bug, a wrong call), never shown as advice.
FOR_DEVELOPERS = {"AssertionError", "RuntimeError", "TypeError", "NotImplementedError",
                  "KeyError", "AttributeError", "StopIteration"}
# Raised with English on purpose: what the raise is, and why it is not translated.
ENGLISH_ON_PURPOSE = {
    ("reader/transports/pcsc.py", "scard_error"):
        "pcscd's own words (SCardGetErrorMessage) and the PC/SC code, for a search",
    ("reader/queue/opening.py", "_CorruptDatabase"):
        "the damage found: it is the alarm in status.json and the note beside the file, "
        "English like the journal; the CLI says it inside a translated sentence",
    ("reader/sound/clips.py", "ValueError"):
        "a WAV the project did not make: logged at start-up, never printed",
}
WORD = re.compile(r"[A-Za-z]{3,}")
CODE = re.compile(r"[a-z][a-z0-9_]*")  # a reason code such as "wrong_kind": not prose
NOT_WORDS = {"sukumo", "reader", "utf"}  # the program's name, an encoding


def _modules() -> list[Path]:
    found: list[Path] = []
    for entry in PEOPLE_READ:
        path = READER / entry
        found += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return found


def _words(node: ast.expr) -> bool:
    """Is this a literal (or an f-string) with English words in it?"""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        if CODE.fullmatch(node.value):
            return False
        text = node.value
    elif isinstance(node, ast.JoinedStr):
        text = " ".join(v.value for v in node.values
                        if isinstance(v, ast.Constant) and isinstance(v.value, str))
    elif isinstance(node, ast.BinOp):  # "..." + "..." or "..." % x
        return _words(node.left) or _words(node.right)
    else:
        return False
    return any(w.lower() not in NOT_WORDS for w in WORD.findall(text))


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _unmarked(path: Path) -> list[str]:
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and _name(node.func) == "print":
            found += [f"{where}:{node.lineno} print" for a in node.args if _words(a)]
        elif isinstance(node, ast.Call) and _name(node.func) == "Check":
            found += [f"{where}:{node.lineno} Check" for a in node.args[2:4] if _words(a)]
            found += [f"{where}:{node.lineno} Check {k.arg}=" for k in node.keywords
                      if k.arg in ("detail", "advice") and _words(k.value)]
        elif isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            if _name(node.exc.func) in FOR_DEVELOPERS or (
                    str(where), _name(node.exc.func)) in ENGLISH_ON_PURPOSE:
                continue
            if any(_words(a) for a in node.exc.args):
                found.append(f"{where}:{node.lineno} raise {_name(node.exc.func)}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("write", "error")
              and _name(node.func.value) in ("stderr", "stdout", "parser")):
            # sys.stderr.write("...") and parser.error("...") reach a person too
            # (log.error(...) is a log record: not looked at).
            found += [f"{where}:{node.lineno} {node.func.attr}" for a in node.args[:1]
                      if _words(a)]
    return sorted(found, key=lambda line: int(line.split(":")[1].split(" ")[0]))


def test_every_message_a_person_reads_is_marked_for_translation() -> None:
    unmarked = [line for path in _modules() for line in _unmarked(path)]
    assert unmarked == [], ("messages not marked with _() (so never translated):\n"
                            + "\n".join(unmarked))


def test_every_module_that_prints_is_scanned() -> None:
    scanned = set(_modules())
    printing = {path for path in READER.rglob("*.py")
                if any(isinstance(n, ast.Call) and _name(n.func) == "print"
                       for n in ast.walk(ast.parse(path.read_text())))}
    assert printing <= scanned, sorted(str(p.relative_to(REPO)) for p in printing - scanned)


def test_the_scan_finds_an_unmarked_message(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        'from reader.system.i18n import _\n'
        'print("reader missing")\n'
        'print(_("reader missing"))\n'
        'raise ConfigError(f"bad key {k}")\n'
        'raise ConfigError(_("bad key {k}").format(k=k))\n'
        'raise AssertionError("unreachable")\n'
        'Check("clock", False, "not synchronised", _("check NTP"))\n'
        'log.error("tap failed")\n')
    found = [line.split(" ", 1)[1] for line in _unmarked(sample)]  # in line order
    assert found == ["print", "raise ConfigError", "Check"]


SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ListComp, ast.SetComp,
          ast.DictComp, ast.GeneratorExp)


def _own_nodes(scope: ast.AST) -> list[ast.AST]:
    """The nodes of a scope, without those of the scopes nested in it."""
    own, todo = [], list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        own.append(node)
        if not isinstance(node, SCOPES):
            todo.extend(ast.iter_child_nodes(node))
    return own


def _shadowing(tree: ast.AST) -> list[int]:
    """Lines of scopes that bind `_` (a throwaway variable) and call `_()` in them: the
    call then gets the variable, and a message becomes a TypeError at the worst time."""
    found = []
    for scope in ast.walk(tree):
        if not isinstance(scope, SCOPES):
            continue
        binds = any((isinstance(n, ast.Name) and n.id == "_" and isinstance(n.ctx, ast.Store))
                    or (isinstance(n, ast.arg) and n.arg == "_") for n in _own_nodes(scope))
        calls = any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                    and n.func.id == "_" for n in ast.walk(scope))
        if binds and calls:
            found.append(scope.lineno)
    return found


def test_no_function_that_translates_binds_the_underscore() -> None:
    shadowed = [f"{path.relative_to(REPO)}:{line}" for path in sorted(READER.rglob("*.py"))
                for line in _shadowing(ast.parse(path.read_text()))]
    assert shadowed == [], "`_` used as a variable where `_()` translates:\n" + "\n".join(
        shadowed)


def test_the_shadowing_check_sees_it() -> None:
    tree = ast.parse("def f(t):\n    _, v = t\n    raise E(_('bad {v}').format(v=v))\n"
                     "def g(t):\n    a, b = t\n    raise E(_('bad'))\n"
                     "def h():\n    on(lambda *_: stop())\n    raise E(_('bad'))\n")
    assert _shadowing(tree) == [1]
