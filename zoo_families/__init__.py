"""zoo's built-in architecture families, installed as ``zoo_families``.

Each module is a plugin registered through the ``zoo.plugins`` entry-point group, exactly as a third-party
plugin would be.
"""
