"""alphaprune: prune a trained classifier by alpha-blending cheap parallel branches into it.

The engine, for your own training loop (the README's "Using the engine in your own loop"):

    plan = alphaprune.allocate(teacher, "lowrank", 0.65, example)   # which layers, how small
    student = alphaprune.make_student(teacher, plan, init="pretrained")
    alphaprune.set_alpha(student, alpha)                             # inside your loop
    alphaprune.collapse(student)                                     # at alpha = 0
    alphaprune.save_model(path, student, alphaprune.recipe_for(name, classes, shape, plan=plan))

Names are imported on first use, so importing one part of the package (a pipeline stage, say)
does not import, or depend on the code of, every other. The fit loop is `alphaprune.fit.fit`
(not re-exported: the name would clash with its module). The pipeline (params schema, stages,
evaluation, plots, report, CLI) is `alphaprune.pipeline`; the engine never imports it.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

# public name -> the engine module that defines it
_API = {
    "allocate": "budget.allocator",
    "Plan": "budget.plan",
    "BudgetError": "budget.plan",
    "make_student": "student",
    "Blend": "blend",
    "blends": "blend",
    "set_alpha": "blend",
    "set_trainable": "blend",
    "collapse": "blend",
    "BRANCHES": "branches.kinds",
    "Branch": "branches.base",
    "count_params": "branches.base",
    "alpha_sequence": "schedules",
    "SCHEDULES": "schedules",
    "MODELS": "models",
    "build_model": "models",
    "recipe_for": "modelfile",
    "with_plan": "modelfile",
    "save_model": "modelfile",
    "load_model": "loading",
    "FitSpec": "fitspec",
    "Optimizer": "fitspec",
    "Advance": "fitspec",
    "Augment": "augment",
    "make_loss": "losses",
    "Runtime": "runtime",
    "DeviceData": "batches",
    "UserError": "errors",
    "FileFormatError": "errors",
    "UnknownNameError": "errors",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'alphaprune' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"alphaprune.{_API[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
