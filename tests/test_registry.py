"""The one registry of named things, and its one error."""

from __future__ import annotations

import pytest

from alphaprune.branches.kinds import BRANCHES
from alphaprune.errors import UnknownNameError, UserError
from alphaprune.losses import LOSSES
from alphaprune.models import MODELS
from alphaprune.pipeline.data.sources import SOURCES
from alphaprune.registry import Registry
from alphaprune.schedules import SCHEDULES


def test_register_lookup_and_refuse_to_overwrite():
    things: Registry[int] = Registry("thing")
    things.register("one")(1)
    assert things.lookup("one") == 1 and list(things) == ["one"]
    with pytest.raises(ValueError, match="thing 'one' is already registered"):
        things.register("one")(2)
    assert things["one"] == 1


def test_an_unknown_name_lists_the_known_ones_and_the_closest():
    things: Registry[int] = Registry("thing", hint=", or x:<anything>")
    for name in ("alpha", "beta"):
        things.register(name)(0)
    with pytest.raises(UnknownNameError) as info:
        things.lookup("alpah")
    assert str(info.value) == (
        "unknown thing 'alpah'; known: alpha, beta, or x:<anything> (did you mean 'alpha'?)"
    )
    assert isinstance(info.value, UserError | ValueError)  # the CLI's one-line error


@pytest.mark.parametrize(
    ("registry", "kind", "known"),
    [
        (MODELS, "model", "cnn"),
        (SOURCES, "data source", "digits"),
        (BRANCHES, "branch kind", "lowrank"),
        (SCHEDULES, "schedule", "cosine"),
        (LOSSES, "loss", "kd"),
    ],
)
def test_every_kind_of_name_uses_it(registry, kind, known):
    assert isinstance(registry, Registry) and known in registry
    with pytest.raises(UnknownNameError, match=rf"^unknown {kind} 'nope'; known: .*{known}"):
        registry.lookup("nope")
