"""What a benchmark measures: :class:`ModelSpec`, one model (ours or a transformers peer) at
one clip size."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from xvit.benchmarks.peers import PEERS, build_peer, peer_attention_backend
from xvit.models import create_model

__all__ = ["ModelSpec"]


@dataclass
class ModelSpec:
    """One model at one clip size: a registry name of ours or a peer name (``hf_*``)."""

    name: str
    num_frames: int = 8
    img_size: int = 224
    size: str = "base"  # peers only: width/depth/heads from peers.PEER_SIZES
    overrides: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def source(self) -> str:
        """``"hf"`` for a transformers peer, ``"xvit"`` for a model of ours."""
        return "hf" if self.name in PEERS else "xvit"

    @property
    def display(self) -> str:
        """Short name used in tables: the label, or the name with the clip size."""
        return self.label or f"{self.name} {self.num_frames}x{self.img_size}"

    def build(self) -> nn.Module:
        """The model in eval mode with random weights, on the CPU in fp32."""
        if self.source == "hf":
            model = build_peer(self.name, self.num_frames, self.img_size, size=self.size, **self.overrides)
        else:
            model = create_model(
                self.name, num_frames=self.num_frames, img_size=self.img_size, **self.overrides
            )
        return model.eval()

    def input_shape(self, batch: int) -> tuple[int, ...]:
        """The clip batch shape the model takes: ours ``(B,3,T,H,W)``, peers ``(B,T,3,H,W)``."""
        t, s = self.num_frames, self.img_size
        return (batch, t, 3, s, s) if self.source == "hf" else (batch, 3, t, s, s)

    def attention_backend(self) -> str:
        """How attention is computed: SDPA for ours, the peer's own choice for peers."""
        return peer_attention_backend(self.name) if self.source == "hf" else "sdpa"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(**d)
