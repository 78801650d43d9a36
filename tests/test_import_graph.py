"""The package's modules import down the course: every module sits in one declared layer and
imports only its own layer and those below, and no import cycle; both count the imports hidden
inside functions (a cycle or an upward arrow there still ties the modules together)."""
import ast
from pathlib import Path

import bridgelib

PACKAGE = Path(bridgelib.__file__).parent
# No cycle is known: the last one (data <-> datasets) went when real data got one door,
# datasets.load_dataset (issue 13).
KNOWN: set[tuple[str, ...]] = set()

# Lowest first. A module may import its own layer and those below, never one above: a new module
# must be placed here (test_every_module_has_a_layer).
LAYERS: list[tuple[str, set[str]]] = [
    ("foundations", {"files", "validation", "prompts", "locks", "config", "memory", "data"}),
    ("the mini world's data", {"mini", "mini.glyphs", "mini.fashion", "mini.vocab"}),
    ("data on disk: real data, synthetic sets, the results store",
     {"splits", "manifest", "folders", "datasets", "store"}),
    ("models", {"models", "metrics", "pipeline"}),
    ("stages", {"generate", "invert", "transfer"}),
    ("experiments", {"experiments"}),
    ("results", {"claims", "verdicts", "report"}),
    # They train with the stages; only the CLI's `bridge mini build|calibrate` imports them.
    ("the mini world's builders", {"mini_build", "mini_build.backbone", "mini_build.generator",
                                   "mini_build.build", "mini_build.calibrate"}),
    ("doors: the command, the notebooks' helpers and short names",
     {"cli", "__main__", "notebook", "__init__"}),
]


def import_graph() -> dict[str, set[str]]:
    modules = {"bridgelib." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
               .replace(".__init__", ""): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bridgelib"):
                subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
                targets |= subs or {node.module}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name in modules}
        graph[name] = {t for t in targets if t in modules and t not in (name, "bridgelib")}
    return graph


def layer_of() -> dict[str, int]:
    """Module name (as `import_graph` spells it) -> index of its layer."""
    return {f"bridgelib.{m}": i
            for i, (_, modules) in enumerate(LAYERS) for m in modules}


def upward_imports(graph, layer) -> list[str]:
    return sorted(f"{m} ({LAYERS[layer[m]][0]}) imports {t} ({LAYERS[layer[t]][0]})"
                  for m, targets in graph.items() for t in targets if layer[t] > layer[m])


def cycles(graph) -> set[tuple[str, ...]]:
    found = set()

    def walk(start, node, path):
        for nxt in graph[node]:
            if nxt == start:
                i = path.index(min(path))
                found.add(tuple(path[i:] + path[:i]))
            elif nxt not in path:
                walk(start, nxt, path + [nxt])
    for module in graph:
        walk(module, module, [module])
    return found


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "bridgelib.datasets" in graph["bridgelib.cli"]  # imported inside _invert
    assert "bridgelib.claims" in graph["bridgelib.report"]
    assert "bridgelib.mini_build.build" in graph["bridgelib.cli"]  # inside the `mini build` handler


def test_every_module_has_a_layer():
    placed = [m for _, modules in LAYERS for m in modules]
    assert len(placed) == len(set(placed)), "a module is in two layers"
    modules = set(import_graph())
    assert modules - set(layer_of()) == set(), "place these modules in LAYERS"
    assert set(layer_of()) - modules == set(), "LAYERS names modules that do not exist"


def test_no_module_imports_a_higher_layer():
    assert upward_imports(import_graph(), layer_of()) == []


def test_an_upward_import_is_caught():
    graph = {**import_graph(), "bridgelib.files": {"bridgelib.cli"}}
    assert upward_imports(graph, layer_of()) == [
        "bridgelib.files (foundations) imports bridgelib.cli "
        f"({LAYERS[-1][0]})"]


def test_the_mini_worlds_data_imports_no_stage():
    """What the stages read of the mini world reaches, through all its imports, only the
    foundations: loading the world never loads a stage or a builder."""
    graph, layer = import_graph(), layer_of()
    world = {m for m in graph if layer[m] == 1}
    reached, todo = set(), set(world)
    while todo:
        reached |= todo
        todo = set().union(*(graph[m] for m in todo)) - reached
    assert {m for m in reached if layer[m] > 1} == set()
    assert {"bridgelib.mini.fashion", "bridgelib.mini.vocab"} <= world


def test_only_the_cli_imports_the_world_builders():
    graph = import_graph()
    builders = {m for m in graph if m.startswith("bridgelib.mini_build")}
    assert {m for m in graph if graph[m] & builders} - builders == {"bridgelib.cli"}


def test_no_import_cycle_beyond_the_known_one():
    assert cycles(import_graph()) <= KNOWN, sorted(cycles(import_graph()) - KNOWN)
