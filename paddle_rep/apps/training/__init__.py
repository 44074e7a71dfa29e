"""The parts of ``paddle-rep train`` (:mod:`paddle_rep.apps.train`): data, recipes, model helpers, checkpoints, loop.

- :mod:`.data` image folders and label lists, keyed augmentation, the sharded batch sampler;
- :mod:`.recipes` the official recipes as presets, and their learning-rate and temperature curves;
- :mod:`.model` pretrained weights with a new head, weight-decay groups, custom L2, EMA;
- :mod:`.checkpoint` atomic, resumable training checkpoints;
- :mod:`.loop` the steps, evaluation and metrics.
"""
