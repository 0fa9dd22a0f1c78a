"""The files output: parameters, bundles and templates written to files.dir as one atomic set.

`output.py` decides what the set holds, `directory.py` opens files.dir only when nobody else can
change it, `atomic_writer.py` swaps the set in the Kubernetes AtomicWriter way, `bundles.py`
renders dotenv/JSON bundles, `templates.py` the sandboxed jinja2 templates.
"""

from typing import TYPE_CHECKING

from agent.outputs.files.directory import UnsafeDirectoryError
from agent.outputs.files.output import FilesOutput

if TYPE_CHECKING:
    from agent.outputs.files.templates import TemplateError, TemplateRenderer


def __getattr__(name: str) -> object:
    # jinja2 is imported on first use of the template names, not with the files output.
    if name in ("TemplateError", "TemplateRenderer"):
        from agent.outputs.files import templates

        return getattr(templates, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FilesOutput", "TemplateError", "TemplateRenderer", "UnsafeDirectoryError"]
