"""The files output: parameters, bundles and templates written to files.dir as one atomic set.

`output.py` decides what the set holds, `directory.py` opens files.dir only when nobody else can
change it, `atomic_writer.py` swaps the set in the Kubernetes AtomicWriter way, `bundles.py`
renders dotenv/JSON bundles, `templates.py` the sandboxed jinja2 templates.
"""

from agent.outputs.files.directory import UnsafeDirectoryError
from agent.outputs.files.output import FilesOutput
from agent.outputs.files.templates import TemplateError, TemplateRenderer

__all__ = ["FilesOutput", "TemplateError", "TemplateRenderer", "UnsafeDirectoryError"]
