"""A component: one addressable channel of a device, in a pipeline role."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Component(BaseModel):
    """One channel of a device as used in a pipeline (the ``tomato_Component`` of outputs)."""

    name: str
    driver: str
    device: str
    address: str
    channel: str
    role: str
    capabilities: list[str] = Field(default_factory=list)

    @property
    def key(self) -> str:
        """How the component's driver names it: ``"<address>,<channel>"``."""
        return f"{self.address},{self.channel}"

    @classmethod
    def make(cls, driver: str, device: str, address: str, channel: str, role: str) -> Component:
        """A component named ``"<driver>:(<address>,<channel>)"``, without capabilities."""
        return cls(
            name=f"{driver}:({address},{channel})",
            driver=driver,
            device=device,
            address=address,
            channel=channel,
            role=role,
        )
