"""What every section of the params schema is built from: a strict, frozen pydantic model (unknown
keys refused), the common number types, and the one-line error a bad file ends in."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from alphaprune.errors import UserError

Fraction = Annotated[float, Field(gt=0, lt=1)]
Probability = Annotated[float, Field(ge=0, le=1)]
PositiveInt = Annotated[int, Field(ge=1, strict=True)]
NonNegativeInt = Annotated[int, Field(ge=0, strict=True)]


class ConfigError(UserError, ValueError):
    """A configuration problem, already phrased as one line: ``file: key.path: what, got value``."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
