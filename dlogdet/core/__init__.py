"""L0 core: errors, the one result type, its ``Status``, typed diagnostics and the settings (``dlogdet.yaml``).

Imports nothing of dlogdet's other layers, and of the third-party packages only NumPy, PyYAML and ``dask.config``.
"""
