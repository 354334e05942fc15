"""Import directions stay as STYLE.md draws them (an ast scan of src/fda)."""

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "fda"


def _imports(path: pathlib.Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            for alias in node.names:
                yield f"{node.module}.{alias.name}"


def _modules(package: str):
    if package.endswith(".py"):
        return [SRC / package] if (SRC / package).exists() else []
    root = SRC / package if (SRC / package).is_dir() else None
    if root is None:
        return [SRC / f"{package}.py"] if (SRC / f"{package}.py").exists() else []
    return sorted(root.rglob("*.py"))


FORBIDDEN = [
    # (package, forbidden import prefixes)
    ("pipeline", ("fda.model", "fda.train", "fda.eval", "fda.cli", "torch", "open_clip")),
    ("model", ("fda.shards", "fda.pipeline", "fda.train", "fda.eval", "fda.cli")),
    ("train", ("fda.eval", "fda.cli")),
    ("eval", ("fda.train", "fda.cli")),
    ("shards", ("fda.model", "fda.train", "fda.eval", "fda.pipeline", "fda.cli", "torch", "open_clip")),
    ("config", ("fda.shards", "fda.model", "fda.train", "fda.eval", "fda.pipeline", "fda.cli")),
    ("runs", ("fda.shards", "fda.model", "fda.train", "fda.eval", "fda.pipeline", "fda.cli", "torch", "open_clip")),
    ("options", ("fda.config", "fda.files", "fda.shards", "fda.model", "fda.train", "fda.eval", "fda.pipeline",
                 "fda.cli", "fda.lab", "torch", "open_clip")),
    ("files", ("fda.config", "fda.options", "fda.shards", "fda.model", "fda.train", "fda.eval", "fda.pipeline",
               "fda.cli", "fda.lab", "torch", "open_clip")),
    ("lab/config.py", ("fda.shards", "fda.model", "fda.train", "fda.eval", "fda.pipeline", "fda.cli", "torch",
                       "open_clip")),
    ("pipeline/executors.py", ("fda.pipeline", "fda.shards", "fda.config", "fda.model", "fda.train", "fda.eval",
                               "fda.cli", "fda.lab", "torch", "open_clip")),
    ("errors", ("fda.",)),
    ("logs", ("fda.",)),
    ("lab/viz.py", ("fda.model", "fda.train", "fda.eval", "fda.lab.experiments", "fda.cli", "torch", "open_clip")),
    ("lab", ("fda.cli",)),
]


@pytest.mark.parametrize("package", ["pipeline", "shards", "model", "train", "eval", "runs", "config", "options",
                                     "files", "errors", "logs"])
def test_the_core_never_imports_the_application_layer(package):
    bad = [f"{path.relative_to(SRC)} imports {name}" for path in _modules(package) for name in _imports(path)
           if name == "fda.lab" or name.startswith("fda.lab.")]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package,forbidden", FORBIDDEN, ids=[p for p, _ in FORBIDDEN])
def test_forbidden_imports(package, forbidden):
    bad = []
    for path in _modules(package):
        for name in _imports(path):
            if any(name == f.rstrip(".") or name.startswith(f if f.endswith(".") else f + ".") or name == f
                   for f in forbidden):
                bad.append(f"{path.relative_to(SRC)} imports {name}")
    assert not bad, "\n".join(bad)


def test_nothing_imports_cli():
    bad = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
           if p.name not in ("cli.py", "__main__.py") and any(n.startswith("fda.cli") for n in _imports(p))]
    assert not bad, bad


def test_only_cli_imports_experiments():
    """fda.lab.experiments joins train and eval; like fda.lab.demo, only the CLI (and the demo) may import it."""
    bad = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
           if p.name not in ("cli.py", "experiments.py", "demo.py")
           and any(n.startswith("fda.lab.experiments") for n in _imports(p))]
    assert not bad, bad


def test_one_model_front_door():
    """train, eval, embed, search and the lab build models only through fda.model.create (fda.model.source)."""
    builders = ("fda.model.load_alpha_clip", "fda.model.factory.load_alpha_clip", "fda.model.load_checkpoint",
                "fda.model.checkpoint.load_checkpoint")
    bad = [f"{p.relative_to(SRC)} imports {n}" for p in SRC.rglob("*.py") if "model" not in p.relative_to(SRC).parts
           for n in _imports(p) if n in builders]
    assert not bad, "\n".join(bad)


def test_the_lab_imports_public_names_only():
    """fda.lab reaches other modules through their public names (no ``from fda.x import _private``)."""
    bad = []
    for path in sorted((SRC / "lab").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fda"):
                bad += [f"{path.relative_to(SRC)} imports {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_")]
    assert not bad, "\n".join(bad)
