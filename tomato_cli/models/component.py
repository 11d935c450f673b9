"""A component: one addressable channel of a device, in a pipeline role."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
)


class Component(BaseModel):
    """One channel of a device as used in a pipeline (the ``tomato_Component`` of outputs)."""

    name: str
    driver: str
    device: str
    address: str
    channel: str
    role: str
    capabilities: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_serializer(mode="wrap")
    def _drop_empty_options(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        data = handler(self)
        if isinstance(data, dict) and not data.get("options"):
            data.pop("options", None)  # the original's tomato_Component has no options
        return data

    @property
    def key(self) -> str:
        """How the component's driver names it: ``"<address>,<channel>"``."""
        return f"{self.address},{self.channel}"

    @classmethod
    def make(
        cls,
        driver: str,
        device: str,
        address: str,
        channel: str,
        role: str,
        options: dict[str, Any] | None = None,
    ) -> Component:
        """A component named ``"<driver>:(<address>,<channel>)"``, without capabilities."""
        return cls(
            name=f"{driver}:({address},{channel})",
            driver=driver,
            device=device,
            address=address,
            channel=channel,
            role=role,
            options=dict(options or {}),
        )
