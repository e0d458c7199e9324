"""SQL only with parameters: no value ever reaches a statement's text.

Every asyncpg call in the code (``execute``, ``fetch``, ``fetchrow``, ``fetchval``,
``executemany``) is found by parsing the source. Its SQL must be a string literal, or an
f-string whose only interpolations are module-level constants that are themselves string
literals (the column lists in booking/store/, also when imported from a sibling module),
module-level constants made by ``booking.store.columns`` / ``placeholders`` from a dataclass's
field names (code, not values), or local names bound only to string
literals (``lock = " FOR UPDATE" if for_update else ""``). Anything else would let a value
into the SQL text, and this test names the file and line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["booking", "activities", "api", "workflows", "bench", "worker.py"]
SQL_METHODS = {"execute", "executemany", "fetch", "fetchrow", "fetchval"}
# Statements that are code, not values: the migration files shipped in the package.
ALLOWED = {"booking/db.py": {"migration.sql"}}


def _files() -> list[Path]:
    found: list[Path] = []
    for name in SOURCES:
        path = ROOT / name
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(path.rglob("*.py")))
    return found


# booking.store's builders of column lists: their text is a dataclass's field names.
SHAPE_BUILDERS = {"columns", "placeholders"}


def _is_shape(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in SHAPE_BUILDERS
        and all(isinstance(a, ast.Name) for a in node.args)
        and all(isinstance(k.value, ast.Constant | ast.Tuple) for k in node.keywords)
    )


def _is_literal_text(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _is_literal_text(node.left) and _is_literal_text(node.right)
    if isinstance(node, ast.IfExp):
        return _is_literal_text(node.body) and _is_literal_text(node.orelse)
    return False


def _literal_names(scope: ast.AST) -> dict[str, bool]:
    """name -> True when every assignment to it in ``scope`` (not nested defs) is literal text."""
    names: dict[str, bool] = {}
    scopes = ast.Module | ast.FunctionDef | ast.AsyncFunctionDef
    stack: list[ast.AST] = list(scope.body) if isinstance(scope, scopes) else []
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    module_level = isinstance(scope, ast.Module)
                    ok = _is_literal_text(node.value) or (module_level and _is_shape(node.value))
                    names[target.id] = names.get(target.id, True) and ok
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            ok = node.value is not None and _is_literal_text(node.value)
            names[node.target.id] = names.get(node.target.id, True) and ok
        stack.extend(ast.iter_child_nodes(node))
    return names


def _imported_literal_names(tree: ast.Module) -> dict[str, bool]:
    """Names imported from this project's modules that are literal text there."""
    names: dict[str, bool] = {}
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
            continue
        source = ROOT / (node.module.replace(".", "/") + ".py")
        if not source.is_file():
            continue
        defined = _literal_names(ast.parse(source.read_text(), filename=str(source)))
        for alias in node.names:
            if defined.get(alias.name):
                names[alias.asname or alias.name] = True
    return names


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    module_names = {**_imported_literal_names(tree), **_literal_names(tree)}
    problems: list[str] = []

    def check(function: ast.AST | None, call: ast.Call) -> None:
        if not call.args:
            return
        sql = call.args[0]
        where = f"{path.relative_to(ROOT)}:{call.lineno}"
        if _is_literal_text(sql):
            return
        if isinstance(sql, ast.JoinedStr):
            local_names = _literal_names(function) if function is not None else {}
            for part in sql.values:
                if not isinstance(part, ast.FormattedValue):
                    continue
                value = part.value
                if isinstance(value, ast.Name) and (
                    local_names.get(value.id) or module_names.get(value.id)
                ):
                    continue
                problems.append(f"{where}: f-string interpolates {ast.unparse(value)!r}")
            return
        if ast.unparse(sql) in ALLOWED.get(str(path.relative_to(ROOT)), set()):
            return
        if isinstance(sql, ast.Name) and (
            module_names.get(sql.id)
            or (function is not None and _literal_names(function).get(sql.id))
        ):
            return
        problems.append(f"{where}: SQL text is {ast.unparse(sql)!r}, not a literal")

    def visit(node: ast.AST, function: ast.AST | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            if (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr in SQL_METHODS
                and _looks_like_sql(child)
            ):
                check(function, child)
            visit(child, inner)

    visit(tree, None)
    return problems


def _looks_like_sql(call: ast.Call) -> bool:
    """Skip same-named methods that are not asyncpg (bench's GraphQL ``execute``)."""
    if not call.args:
        return False
    first = call.args[0]
    text = ""
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        text = first.value
    elif isinstance(first, ast.JoinedStr):
        text = "".join(
            p.value
            for p in first.values
            if isinstance(p, ast.Constant) and isinstance(p.value, str)
        )
    else:
        return True  # a name or an expression: must be checked
    keywords = ("SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "SHOW", "LISTEN", "WITH")
    return text.lstrip().upper().startswith(keywords)


def test_every_sql_statement_takes_values_only_as_parameters() -> None:
    files = _files()
    assert len(files) > 20
    problems = [problem for path in files for problem in _violations(path)]
    assert problems == []


def test_the_check_catches_interpolated_values(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "COLUMNS = 'id, name'\n"
        "async def f(conn, user_id, table):\n"
        "    await conn.fetch(f'SELECT {COLUMNS} FROM users WHERE id = {user_id}')\n"
        "    await conn.execute('DELETE FROM ' + table)\n"
        "    query = 'SELECT 1 WHERE id = ' + user_id\n"
        "    await conn.fetchval(query)\n"
        "    await conn.fetchval('SELECT $1', user_id)\n"
        "ROW_COLUMNS = columns(Row)\n"
        "async def g(conn, row):\n"
        "    await conn.fetch(f'SELECT {ROW_COLUMNS} FROM t')\n"
        "    cols = columns(row)\n"
        "    await conn.fetch(f'SELECT {cols} FROM t')\n"
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        problems = _violations(bad)
    finally:
        ROOT = saved
    # The module-level shape of a dataclass passes; one built inside a function does not.
    assert len(problems) == 4, problems
    assert "cols" in problems[3]
    assert "user_id" in problems[0]


# -- pooled connections keep no session state ---------------------------------------------
#
# booking.db.create_pool releases a connection without asyncpg's reset query (only an open
# transaction is rolled back), so nothing may leave state on a pooled connection for the
# next borrower: a session SET, a session advisory lock, LISTEN, a cursor WITH HOLD, a
# prepared statement by SQL, a temporary table. Where a connection of its own does it, the
# file is named here with what it may do.
SESSION_STATE = {
    "session SET": re.compile(
        r"""["']\s*SET\s+(?!LOCAL\b)(?!TRANSACTION\b)\w+\s*(?:=|TO\b)""", re.I
    ),
    "set_config not local to the transaction": re.compile(
        r"set_config\(\s*'[^']*'\s*,\s*[^,()]+,\s*(?!true\b)\w+\s*\)", re.I
    ),
    "session advisory lock": re.compile(r"pg_(?:try_)?advisory_lock(?:_shared)?\s*\(", re.I),
    "LISTEN": re.compile(r"""(?:["']\s*LISTEN\s)|add_listener\s*\("""),
    "cursor WITH HOLD": re.compile(r"WITH\s+HOLD", re.I),
    "SQL PREPARE": re.compile(r"""["']\s*PREPARE\s""", re.I),
    "temporary table": re.compile(r"CREATE\s+(?:TEMP|TEMPORARY)\s+TABLE", re.I),
}
# The migration runs on a connection it opens and closes; the API's LISTEN connection and
# the bench's status listener are connections of their own.
OWN_CONNECTION = {
    "booking/db.py": {"session advisory lock"},
    "api/notify.py": {"LISTEN"},
    "bench/scenarios/payment.py": {"LISTEN"},
}


def _session_state(path: Path, text: str) -> list[str]:
    allowed = OWN_CONNECTION.get(path.relative_to(ROOT).as_posix(), set())
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for what, pattern in SESSION_STATE.items():
            if what not in allowed and pattern.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()}")
    return found


def test_no_code_leaves_session_state_on_a_pooled_connection() -> None:
    problems = [p for path in _files() for p in _session_state(path, path.read_text())]
    assert problems == []


def test_the_session_state_check_finds_each_kind(tmp_path: Path) -> None:
    lines = [
        "await conn.execute('SET statement_timeout = 5')",
        "await conn.execute(\"SELECT set_config('lock_timeout', $1, false)\")",
        "await conn.execute('SELECT pg_advisory_lock($1)', 1)",
        "await conn.add_listener('bookings', cb)",
        "await conn.execute('DECLARE c CURSOR WITH HOLD FOR SELECT 1')",
        "await conn.execute('PREPARE q AS SELECT 1')",
        "await conn.execute('CREATE TEMP TABLE t (x int)')",
    ]
    fine = [
        "await conn.execute('SET LOCAL lock_timeout = 5')",
        "await conn.execute(\"SELECT set_config('lock_timeout', $1, true)\")",
        "await conn.execute('SELECT pg_advisory_xact_lock($1)', 1)",
        "    SET booking_status = 'APPROVED', paid_at = $2",
    ]
    bad = tmp_path / "bad.py"
    bad.write_text("\n".join(lines + fine) + "\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        problems = _session_state(bad, bad.read_text())
    finally:
        ROOT = saved
    assert [p.split(": ")[1] for p in problems] == list(SESSION_STATE)
