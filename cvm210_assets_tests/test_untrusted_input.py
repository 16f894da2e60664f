"""Nothing the pipeline reads from CVM or from the lake is deserialized as code.

Data comes in as zip, CSV, JSON (state records) and Parquet/Delta only; a pickle from the
network or the lake would run whatever its author wanted. This scan fails the day someone
adds one.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cvm210_assets"
CODE_LOADING_MODULES = {"pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve", "joblib"}
CODE_LOADING_CALLS = {"read_pickle", "unsafe_load", "full_load"}


def _problems(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            names = []
            attribute = node.func.attr
            if attribute in CODE_LOADING_CALLS:
                found.append(f"{path.name}:{node.lineno}: {attribute}()")
            safe = any(k.arg == "Loader" and "Safe" in ast.unparse(k.value) for k in node.keywords)
            if attribute == "load" and ast.unparse(node.func.value) == "yaml" and not safe:
                found.append(f"{path.name}:{node.lineno}: yaml.load without SafeLoader")
            if attribute == "load" and any(
                k.arg == "allow_pickle" and ast.unparse(k.value) == "True" for k in node.keywords
            ):
                found.append(f"{path.name}:{node.lineno}: load(allow_pickle=True)")
        else:
            continue
        found += [
            f"{path.name}:{node.lineno}: imports {n}" for n in names if n in CODE_LOADING_MODULES
        ]
    return found


def test_the_package_never_deserializes_code() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    assert [p for f in files for p in _problems(f)] == []


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\nfrom cloudpickle import loads\nimport yaml, pandas as pd\n"
        "yaml.load(open('x'))\npd.read_pickle('x')\nimport numpy as np\n"
        "np.load('x', allow_pickle=True)\nyaml.load(open('x'), Loader=yaml.SafeLoader)\n"
    )
    assert _problems(bad) == [
        "bad.py:1: imports pickle",
        "bad.py:2: imports cloudpickle",
        "bad.py:4: yaml.load without SafeLoader",
        "bad.py:5: read_pickle()",
        "bad.py:7: load(allow_pickle=True)",
    ]
