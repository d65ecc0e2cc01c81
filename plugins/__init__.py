"""The built-in reconstruction methods, one short module per method, each importing only public ``workbench``
names (``workbench.toolkit`` and the ``__all__`` of the library modules). They are registered exactly as a third
party's methods are, as entry points of the group ``workbench.methods`` in ``pyproject.toml``, and this folder
installs as the package ``workbench_builtin_methods`` (a name that cannot clash with a user's ``plugins``)."""
