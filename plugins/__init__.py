"""The built-in reconstruction methods, loaded through the same public plugin API as third-party plugins
(``workbench.methods.discover_methods``): one module per method; modules starting with ``_`` are helpers."""
