"""HF checkpoint import/export. CLI: `python -m clowlab.convert {import,export} ...`."""
from clowlab.convert.hf import HFModel, load_hf, save_hf, to_hf_tensors
from clowlab.convert.workdir import export_workdir, import_to_workdir

__all__ = ["HFModel", "load_hf", "save_hf", "to_hf_tensors", "import_to_workdir",
           "export_workdir"]
