"""Masking strategies: a fill x the mask as a channel x plain or mask-aware layers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ALL_STRATEGIES", "DEFAULT_STRATEGIES", "FILLS", "Strategy", "parse_strategies"]

#: Fills applied before plain layers.
FILLS = ("zero", "mean", "learned")


@dataclass(frozen=True)
class Strategy:
    """How a network sees missing values.

    Attributes:
        fill: ``"zero"``, ``"mean"`` (per-sample, per-channel mean of the valid
            values) or ``"learned"`` (a learned per-channel token), applied
            before plain layers. Ignored by mask-aware layers, which never read
            masked values (stored as ``"none"``).
        mask_channel: append the validity mask as extra input channel(s).
        layers: ``"plain"`` (``nn.Conv2d``, ``nn.BatchNorm2d``, pooling) or
            ``"partial"`` (masknn's partial convolution with masked pooling and
            normalization).

    The name is the ``+``-joined spec: ``zero``, ``mean+mc``, ``partial``,
    ``partial+mc``, ``learned+mc`` ...

    Examples:
        >>> Strategy.parse("mean+mc")
        Strategy(fill='mean', mask_channel=True, layers='plain')
        >>> Strategy("none", True, "partial").name
        'partial+mc'
    """

    fill: str = "zero"
    mask_channel: bool = False
    layers: str = "plain"

    def __post_init__(self) -> None:
        if self.layers not in ("plain", "partial"):
            raise ValueError(f"Strategy: layers must be 'plain' or 'partial', got {self.layers!r}")
        if self.layers == "plain" and self.fill not in FILLS:
            raise ValueError(f"Strategy: fill must be one of {FILLS} for plain layers, got {self.fill!r}")
        if self.layers == "partial" and self.fill != "none":
            raise ValueError("Strategy: partial layers never read masked values; use fill='none'")

    @property
    def name(self) -> str:
        head = "partial" if self.layers == "partial" else self.fill
        return head + ("+mc" if self.mask_channel else "")

    @classmethod
    def parse(cls, spec: str) -> Strategy:
        """Parse ``fill[+mc]`` or ``partial[+mc]`` (order of the parts does not matter)."""
        parts = [p.strip().lower() for p in spec.split("+") if p.strip()]
        mc = "mc" in parts
        rest = [p for p in parts if p != "mc"]
        if len(rest) != 1 or parts.count("mc") > 1:
            raise ValueError(
                f"Strategy: cannot parse {spec!r}; expected one of {FILLS + ('partial',)} "
                "optionally followed by '+mc' (mask channel), e.g. 'zero+mc'"
            )
        head = rest[0]
        if head == "partial":
            return cls("none", mc, "partial")
        if head not in FILLS:
            raise ValueError(
                f"Strategy: unknown fill {head!r} in {spec!r}; expected one of {FILLS + ('partial',)}"
            )
        return cls(head, mc, "plain")


DEFAULT_STRATEGIES = ("zero", "mean", "zero+mc", "mean+mc", "partial", "partial+mc")
"""The default comparison: the baselines users try first and partial convolution."""
ALL_STRATEGIES = ("zero", "mean", "learned", "zero+mc", "mean+mc", "learned+mc", "partial", "partial+mc")
"""Every combination the harness builds."""


def parse_strategies(specs: str | Iterable[str | Strategy] | None) -> list[Strategy]:
    """Strategies from a comma-separated string, a list, ``"all"`` or ``None`` (the default set).

    Examples:
        >>> [s.name for s in parse_strategies("zero, partial+mc")]
        ['zero', 'partial+mc']
    """
    if specs is None:
        specs = DEFAULT_STRATEGIES
    if isinstance(specs, str):
        specs = ALL_STRATEGIES if specs.strip() == "all" else [s for s in specs.split(",") if s.strip()]
    out = [s if isinstance(s, Strategy) else Strategy.parse(s) for s in specs]
    if not out:
        raise ValueError("parse_strategies: no strategy given")
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"parse_strategies: duplicate strategies in {names}")
    return out
