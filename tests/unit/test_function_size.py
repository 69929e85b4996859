"""No product function grows past 60 lines (issue 19): a longer one holds more than one concern and
is split by concern. Product code is the services' source, the collection's plugins and the Python
under scripts/; tests and benchmarks are not counted."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [
    ROOT / "services" / "src",
    ROOT / "collections" / "ansible_collections" / "todo" / "platform" / "plugins",
    ROOT / "scripts",
]
MAX_LINES = 60


def functions_over(limit: int) -> list[str]:
    found = []
    for root in PRODUCT:
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > limit:
                        found.append(
                            f"{path.relative_to(ROOT)}:{node.lineno} {node.name}() has {lines} lines"
                        )
    return found


def test_no_product_function_is_longer_than_60_lines():
    too_long = functions_over(MAX_LINES)
    assert not too_long, (
        f"functions over {MAX_LINES} lines; split each by concern (behaviour unchanged):\n  "
        + "\n  ".join(too_long)
    )


def test_the_check_finds_a_long_function():
    assert functions_over(10), "the scan found no function over 10 lines: it reads nothing"
