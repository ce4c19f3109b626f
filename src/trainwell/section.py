"""The base class of every config section: strict, frozen, documented field by field."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section. Unknown keys fail (with a suggestion); fields are documented by the
    docstring under them, which ``trainwell config show`` prints."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        validate_default=True,
    )
