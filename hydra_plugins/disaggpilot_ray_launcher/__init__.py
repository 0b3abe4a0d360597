"""A Hydra launcher that runs each multirun job as a Ray task: ``hydra/launcher=ray_tasks``.

``hydra_plugins`` is a namespace package (no ``__init__.py``), which is how Hydra discovers plugins.
Why our own plugin and not ``hydra-ray-launcher``: see :mod:`.ray_tasks_launcher`.
"""
