"""The package's rooms and the direction of their imports (docs: DESIGN §3, README layout).

Each room imports only from rooms below it, or from itself: ``clip`` (CLIP in pure PyTorch) <
``models`` (the mmseg plug-ins) < ``datasets`` < ``engine`` (what plugs into the runner; its
config preparation wraps the datasets) < ``apis`` (inference, pictures) < ``deploy`` (ONNX
export and ONNX Runtime inference) < ``analysis`` (offline measurement, for the tools). The
imports are read from the source with ``ast``, also those inside functions, so an import
deferred to run time still counts; there are no cycles between modules either.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / 'denseclip'
#: The rooms, lowest first.
ROOMS = ('clip', 'models', 'datasets', 'engine', 'apis', 'deploy', 'analysis')
#: What ``import denseclip`` imports: the rooms that register modules in mmseg's registries.
REGISTERING = ('clip', 'models', 'datasets', 'engine')


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob('*.py'))}


def room(module: str) -> str:
    """``'engine'`` for ``denseclip.engine.hooks.seed_hook``; ``''`` for the package itself."""
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else ''


def imports_of(module: str) -> set[str]:
    """The modules of ``denseclip`` that ``module`` imports (a name from a package: the
    submodule of that name if there is one, else the package)."""
    path = MODULES[module]
    package = module if path.name == '__init__.py' else module.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
                source = '.'.join(anchor + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                submodule = f'{source}.{alias.name}'
                found.add(submodule if submodule in MODULES else source)
    return {name for name in found if name == 'denseclip' or name.startswith('denseclip.')}


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_folder_of_the_package_is_a_room():
    folders = {path.name for path in PACKAGE.iterdir()
               if path.is_dir() and path.name != '__pycache__'}
    assert folders == set(ROOMS)
    assert [module for module in MODULES if not room(module)] == ['denseclip']


def test_the_import_reader_sees_relative_absolute_and_deferred_imports():
    assert 'denseclip.engine.safe_load' in GRAPH['denseclip.engine.config']  # from . import x
    assert 'denseclip.datasets' in GRAPH['denseclip.engine.config']  # from denseclip.x import
    assert 'denseclip.datasets.checks' in GRAPH['denseclip.datasets.validation']  # from .x
    assert 'denseclip.engine.hooks.checkpoint_hook' in GRAPH['denseclip.engine.hooks']
    assert 'denseclip.engine.atomic_io' in GRAPH['denseclip.engine.hooks.checkpoint_hook']


@pytest.mark.parametrize('importer', [module for module in MODULES if room(module)])
def test_imports_go_down_the_rooms_or_stay_in_the_room(importer):
    rank = ROOMS.index(room(importer))
    upwards = sorted(module for module in GRAPH[importer]
                     if room(module) != room(importer)
                     and (not room(module) or ROOMS.index(room(module)) > rank))
    assert upwards == [], f'{importer} ({room(importer)}) imports from a room above it'


def test_import_denseclip_imports_the_registering_rooms_only():
    assert {room(module) for module in GRAPH['denseclip']} == set(REGISTERING)


def test_no_import_cycles():
    done, path = set(), []

    def visit(module: str) -> None:
        if module in path:
            cycle = path[path.index(module):] + [module]
            raise AssertionError('import cycle: ' + ' -> '.join(cycle))
        if module in done:
            return
        path.append(module)
        for imported in sorted(GRAPH[module]):
            visit(imported)
        path.pop()
        done.add(module)

    for module in MODULES:
        visit(module)


def test_deploy_imports_its_optional_packages_lazily():
    """onnx, onnxscript and onnxruntime (the deploy extra) only inside functions."""
    for module, path in MODULES.items():
        if room(module) != 'deploy':
            continue
        tree = ast.parse(path.read_text(), str(path))
        top = {alias.name.split('.')[0] for node in tree.body
               if isinstance(node, (ast.Import, ast.ImportFrom))
               for alias in (node.names if isinstance(node, ast.Import)
                             else [ast.alias(node.module or '')])}
        assert not top & {'onnx', 'onnxscript', 'onnxruntime'}, module
