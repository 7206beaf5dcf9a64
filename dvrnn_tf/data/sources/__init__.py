"""The sequence sources, one module each; importing this package registers them all.

Adding a source is adding a module here that registers a `SequenceSource` subclass
(`dvrnn_tf.data.registry.register`); nothing else needs to change.
"""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
