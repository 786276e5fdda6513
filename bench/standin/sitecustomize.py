"""The scale rehearsal's stand-in for the neural network (bench/scale.py puts this folder on PYTHONPATH).

Python imports `sitecustomize` at start-up; this one waits for `atlas.fold` to be imported and replaces
`Folder._forward` (the network and its tensor post-processing, nothing else) with `standin.forward`, so fold
jobs run their real code (chunk reading, batching, resume parts, structure encoding, Parquet) at the speed of
the rest of the pipeline. Nothing in config.yaml can reach it: only this folder on PYTHONPATH does.
"""

import importlib.abc
import sys


class _PatchAtlasFold(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "atlas.fold":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        loader = spec.loader
        original_exec = loader.exec_module

        def exec_module(module):
            original_exec(module)
            import standin

            module.Folder._forward = standin.forward

        loader.exec_module = exec_module
        return spec


import importlib.util  # noqa: E402

sys.meta_path.insert(0, _PatchAtlasFold())
