"""The errors of the deploy room, and its optional packages imported on first use."""
import importlib
from types import ModuleType

#: How to install what export and ONNX Runtime inference need.
INSTALL_HINT = 'pip install -e .[deploy]'


class ExportError(ValueError):
    """A model, config or file that export or the ONNX runtime cannot handle."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ExportError(message)


def import_optional(name: str) -> ModuleType:
    """``import name`` with an error that says how to install the deploy extra."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(f'{name} is needed for ONNX export and inference but is not '
                          f'installed: {INSTALL_HINT}') from error
