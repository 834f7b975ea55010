"""The shape of the code: dependencies run one way, only methods/ knows method names, functions stay
short, and the command line works as `python -m smartfed`."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from smartfed.methods import METHODS
from smartfed.routers import ROUTER_INITS, ROUTER_KINDS

SRC = Path(__file__).resolve().parents[1] / "src" / "smartfed"

# Lowest first: a module may import only from its own layer and the layers before it.
LAYERS = ["errors", "io", "data", "models", "pool", "routers", "experts", "smartfed", "quota", "eval", "metrics", "methods", "config",
          "fed", "flower", "compare", "tune", "report", "cli", "__main__"]


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1].removesuffix(".py") if len(parts) > 1 else "smartfed"


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        out[name] = ast.parse(path.read_text(), str(path))
    return out


def imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, module) of every smartfed import, at the top or inside functions, except type-only ones."""
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                 for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "smartfed":
            found += [(node.lineno, node.module)] if node.module != "smartfed" else [(node.lineno, "smartfed")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "smartfed"]
    return found


def test_every_package_has_a_layer():
    assert {layer_of(name) for name in modules()} <= set(LAYERS)


def test_no_module_imports_a_layer_above_it():
    wrong = []
    for name, tree in modules().items():
        own = LAYERS.index(layer_of(name))
        for line, module in imports(tree):
            if LAYERS.index(layer_of(module)) > own:
                wrong.append(f"{name}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def _names_in(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return set().union(*(_names_in(e) for e in node.elts)) if node.elts else set()
    return set()


def test_only_methods_compare_method_names():
    """A method name in a comparison outside methods/; a name that is also a router kind or init
    ("arrow") counts when the comparison involves something called method."""
    only_methods = set(METHODS) - set(ROUTER_KINDS) - set(ROUTER_INITS)
    wrong = []
    for name, tree in modules().items():
        if layer_of(name) == "methods":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                compared = set().union(*(_names_in(n) for n in [node.left, *node.comparators]))
                about_method = "method" in ast.unparse(node).replace("'", "").replace('"', "")
                if compared & only_methods or (about_method and compared & set(METHODS)):
                    wrong.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    assert not wrong, "\n".join(wrong)


def test_functions_are_short():
    long = [f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for name, tree in modules().items() for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 60]
    assert not long, "\n".join(long)


@pytest.mark.parametrize("argv", [["-m", "smartfed", "--help"], ["-m", "smartfed", "run", "--help-config"]])
def test_python_dash_m_is_the_command(argv):
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage: smartfed" in done.stdout or "[federation]" in done.stdout


def test_adding_a_method_is_one_class_and_one_registry_line(tiny_model_folder, tmp_path, monkeypatch):
    """The README's example, as written there: a routed method with its own router kind, registered, then run."""
    import json

    from conftest import make_config, tiny_pool
    from smartfed import methods
    from smartfed.fed.simulation import run_simulation
    from smartfed.methods.routed import RoutedMethod

    class MyRouter(RoutedMethod):
        name = "my-router"

        def router_kind(self, config) -> str:
            return "activation"

    monkeypatch.setitem(methods.METHODS, "my-router", MyRouter())
    config = make_config({"model.name": tiny_model_folder, "pool.adapters": tiny_pool(tiny_model_folder, tmp_path, 2),
                          "run.out_dir": str(tmp_path), "run.name": "mine", "run.method": "my-router", "federation.num_clients": 2,
                          "federation.clients_per_round": 2, "federation.rounds": 1, "training.local_steps": 1,
                          "training.batch_size": 2, "training.max_length": 48, "eval.examples": 2})
    summary = run_simulation(config, log=lambda *_: None)
    assert summary.method == "my-router" and json.loads((config.run_dir / "summary.json").read_text())["rounds"] == 1


def test_the_readme_gives_every_config_default_as_config_py_has_it():
    import re
    import tomllib

    from smartfed.config import RunConfig

    readme = (SRC.parents[1] / "README.md").read_text()
    block = readme.split("The sections, with their defaults:\n\n```toml\n", 1)[1].split("```", 1)[0]
    listed: dict[str, dict] = {}
    section = None
    for line in block.splitlines():
        head = re.match(r"\[([\w.]+)\]", line)
        section = head.group(1) if head else section  # a line without [section] goes on the one above
        if "." in section:  # [eeqa.device_budgets]: an example, not a default
            continue
        for key, value in re.findall(r"(\w+) = (\"[^\"]*\"|\[[^\]]*\]|[-+\w.]+)", line.split("#", 1)[-1]):
            listed.setdefault(section, {})[key] = tomllib.loads(f"{key} = {value}")[key]
    defaults = {name: dict(values) for name, values in RunConfig().model_dump(mode="json").items()}
    defaults["eeqa"].pop("device_budgets")
    assert listed == defaults
