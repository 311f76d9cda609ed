"""What a sweep runs: press settings (``RunSpec``: a spec and its ratio or tokens-per-second target, with the
folder-safe label every output is filed under) and the model a sweep is run on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from speechpress.errors import ConfigError, PressError
from speechpress.evaluate.benchmark import slug


@dataclass(frozen=True)
class RunSpec:
    """One press setting of a sweep: the spec as typed plus the ratio or tokens-per-second it is run at."""

    press: str
    ratio: float | None = None
    tokens_per_second: float | None = None

    def parsed(self) -> list[tuple]:
        from speechpress.presses import parse_press_spec

        return parse_press_spec(self.press, self.ratio, self.tokens_per_second)

    @property
    def label(self) -> str:
        """Folder-safe name: ``avgpool-x4``, ``hfq-1.67tps``, ``avgpool-x2+sst-x8``, ``identity``."""
        parts = []
        for name, r, t in self.parsed():
            parts.append(name if (r is None and t is None) else (f"{name}-x{r:g}" if r is not None else f"{name}-{t:g}tps"))
        return slug("+".join(parts))

    @property
    def family(self) -> str:
        """The press names without targets (one plotted line per family)."""
        return "+".join(name for name, _, _ in self.parsed())

    @property
    def nominal_ratio(self) -> float | None:
        """The product of the chain's ratios; None when a press has a tokens-per-second target."""
        total = 1.0
        for _, r, t in self.parsed():
            if t is not None:
                return None
            total *= r if r is not None else 1.0
        return total


def sweep(presses: Sequence[str], ratios: Sequence[float] = (), tokens_per_second: Sequence[float] = ()) -> list[RunSpec]:
    """Every press x every ratio / tokens-per-second target. A bare press name takes each target; a spec with its
    own targets (``avgpool:4``, ``hfq@1.67``, chains) or ``identity`` runs once. Duplicates are dropped."""
    from speechpress.presses import parse_press_spec

    from speechpress.presses import available_presses
    from speechpress.ratio import check_ratio

    known = available_presses()
    for k in ratios:
        check_ratio(k, None)
    for t in tokens_per_second:
        check_ratio(None, t)
    out: list[RunSpec] = []
    for press in presses:
        parsed = parse_press_spec(press)
        for name, r, t in parsed:
            if name not in known:
                raise PressError(f"unknown press {name!r}; available: {', '.join(known)}")
            check_ratio(r, t)
        bare = len(parsed) == 1 and parsed[0][1] is None and parsed[0][2] is None and parsed[0][0] != "identity"
        specs = ([RunSpec(press, float(r), None) for r in ratios] + [RunSpec(press, None, float(t)) for t in tokens_per_second]) if bare else []
        for spec in specs or [RunSpec(press)]:
            if spec.label not in {s.label for s in out}:
                out.append(spec)
    if not out:
        raise ConfigError("no press to run")
    return out


def check_model_path(model: str) -> None:
    """Fail before any run starts on a model path that cannot be a model (hub ids are checked when loaded)."""
    from speechpress.bundled import BUNDLED_NAMES
    from speechpress.errors import ModelLoadError
    from speechpress.model.persistence import CONFIG_NAME, looks_like_hub_id, resolve_model_dir

    path = Path(model)
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path}: is a file, not a model directory")
        if not (path / CONFIG_NAME).is_file():
            raise ModelLoadError(f"{path}: not a model directory (no {CONFIG_NAME})")
    elif str(model) in BUNDLED_NAMES:
        resolve_model_dir(model)  # a bundled model by name: missing from this install is a clear error
    elif not looks_like_hub_id(str(model)):
        raise ModelLoadError(f"{path}: no such model directory")


def model_label(model: str) -> str:
    """A model directory's name; a training output (``RUN/model``) is named after its run, since every run's
    model folder is called ``model``."""
    path = Path(model)
    if not path.exists():
        return slug(str(model).replace("/", "--"))
    path = path.resolve() if path.name in ("", ".", "..") else path
    return slug(path.parent.name if path.name == "model" and path.parent.name else path.name)
