"""The model families, one module each; importing this package registers them all.

Adding a family is adding a module here that ends with
`dvrnn_tf.models.registry.register(ModelFamily(...))`; nothing else needs to change.
"""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
