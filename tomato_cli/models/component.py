"""A component: one addressable channel of a device, in a pipeline role."""

from pydantic import BaseModel, Field


class Component(BaseModel):
    name: str
    driver: str
    device: str
    address: str
    channel: str
    role: str
    capabilities: list[str] = Field(default_factory=list)

    @property
    def key(self) -> str:
        """How the component's driver names it."""
        return f"{self.address},{self.channel}"

    @classmethod
    def make(cls, driver: str, device: str, address: str, channel: str, role: str) -> "Component":
        return cls(
            name=f"{driver}:({address},{channel})",
            driver=driver,
            device=device,
            address=address,
            channel=channel,
            role=role,
        )
