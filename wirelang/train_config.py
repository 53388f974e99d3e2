"""The `train { ... }` block as a validated model, torch-free.

Settings arrive as a plain dict (from the spec, then `--set key=value` overrides merged in), and
are validated here. A call such as `sgd(lr=0.1)` arrives as `{"name": "sgd", "lr": 0.1}` and a
bare word such as `cifar10` as `"cifar10"`; both forms are accepted wherever a named choice is.
"""

from __future__ import annotations

import copy
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# Datasets known to the checker (torch-free): channels, height, width, classes. The data
# registry (`wirelang.data`) implements them; a test checks both agree.
DATASETS: dict[str, tuple[int, int, int, int]] = {
    "cifar10": (3, 32, 32, 10),
    "cifar100": (3, 32, 32, 100),
    "imagenet": (3, 224, 224, 1000),
    "mnist": (1, 28, 28, 10),
    "fashion_mnist": (1, 28, 28, 10),
    "fashion_mnist_small": (1, 28, 28, 10),
    "synthetic": (3, 32, 32, 10),
}


def data_name(data: Any) -> str | None:
    """The dataset a `data` setting names, as written (`cifar10` or `folder(root=...)`), before
    validation; None when it names none."""
    name = data.get("name") if isinstance(data, dict) else data
    return name if isinstance(name, str) else None


def fixed_classes(name: str | None) -> int | None:
    """The class count of a dataset that has one whatever its files hold (not `synthetic`,
    which takes the network's, nor `folder`, which has as many as its class folders)."""
    if name is None or name == "synthetic" or name not in DATASETS:
        return None
    return DATASETS[name][3]


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]


class DataConfig(_Config):
    name: Literal[
        "cifar10",
        "cifar100",
        "imagenet",
        "mnist",
        "fashion_mnist",
        "fashion_mnist_small",
        "synthetic",
        "folder",
        "python",  # datasets passed to `wirelang.train(...)`; nothing to load by name
    ]
    root: str | None = None
    val: Annotated[float, Field(ge=0)] = 0.1  # a fraction of the training set (< 1) or a count
    augment: bool = True
    subset: Annotated[int, Field(ge=1)] | None = None  # keep only this many training images
    workers: Annotated[int, Field(ge=0)] = 0
    size: Annotated[int, Field(ge=1)] = 2048  # synthetic only: number of training images


class OptimizerConfig(_Config):
    name: Literal["sgd", "adamw"]
    lr: PosFloat = 0.1
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = False
    weight_decay: NonNegFloat = 0.0
    betas: tuple[float, float] = (0.9, 0.999)


class ScheduleConfig(_Config):
    name: Literal["constant", "multistep", "cosine"]
    milestones: list[Annotated[int, Field(ge=1)]] = []
    gamma: PosFloat = 0.1
    min_lr: NonNegFloat = 0.0


class PhaseConfig(_Config):
    """The second phase of `lottery_one_shot` / `fine_tune`: unset fields repeat phase one."""

    epochs: Annotated[int, Field(ge=1)] | None = None
    optimizer: OptimizerConfig | None = None
    schedule: ScheduleConfig | None = None
    warmup: Annotated[int, Field(ge=0)] | None = None


class TrainConfig(_Config):
    data: DataConfig = DataConfig(name="synthetic")
    batch: Annotated[int, Field(ge=1)] = 128  # global: split evenly over the processes
    epochs: Annotated[int, Field(ge=1)] = 1
    optimizer: OptimizerConfig = OptimizerConfig(name="sgd")
    schedule: ScheduleConfig = ScheduleConfig(name="constant")
    warmup: Annotated[int, Field(ge=0)] = 0  # epochs of linear warm-up
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    amp: Literal["none", "bf16", "fp16"] = "none"  # CUDA only
    channels_last: bool = False  # CUDA only
    compile: bool = False  # torch.compile, with a fallback to eager
    eval_batch: Annotated[int, Field(ge=1)] | None = None
    # Also write last.pt every N optimizer steps inside an epoch (0: at epoch ends only), so a
    # killed ImageNet-size run loses minutes, not an epoch.
    checkpoint_steps: Annotated[int, Field(ge=0)] = 0
    # timm's staples. Global gradient norm bound (0: no clipping).
    clip_grad: NonNegFloat = 0.0
    # Decay of an exponential moving average of the weights, updated after every optimizer step
    # (0: none); the average is evaluated, and is the model the checkpoints hand out.
    ema: Annotated[float, Field(ge=0, lt=1)] = 0.0
    # Batches per optimizer step: gradients of `accumulate` batches are summed (each scaled by
    # 1/accumulate), so that batch 8 with accumulate 2 takes the step of batch 16.
    accumulate: Annotated[int, Field(ge=1)] = 1
    # A row of metrics.csv (and TensorBoard scalars) every N optimizer steps.
    log_every: Annotated[int, Field(ge=1)] = 10
    tensorboard: bool = False  # also log to TensorBoard (pip install 'wirelang[tensorboard]')
    phase2: PhaseConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return value


class SettingError(ValueError):
    def __init__(self, key: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.key, self.message, self.hint = key, message, hint


def validate(settings: dict[str, Any]) -> TrainConfig:
    """Validate a settings dict; raise SettingError naming the first offending key."""
    try:
        return TrainConfig.model_validate(settings)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(
            str(p) for p in first["loc"] if not str(p).startswith(("function-", "tagged-"))
        )
        raise SettingError(key, _explain(first, key), _hint(first, key)) from None


_NOUNS = {"data": "dataset", "optimizer": "optimizer", "schedule": "schedule"}
_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "above"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "below"),
}


def _explain(error: dict, key: str) -> str:
    kind, found = error["type"], _shown(error["input"])
    parts = key.split(".")
    if kind == "extra_forbidden":
        return f"unknown training setting `{key}`"
    if kind == "literal_error":
        if parts[-1] == "name" and len(parts) > 1 and parts[-2] in _NOUNS:
            return f"unknown {_NOUNS[parts[-2]]} {found}"
        return f"`{key}` cannot be {found}"
    if kind in _BOUNDS:
        bound, words = _BOUNDS[kind]
        return f"`{key}` must be {words} {error['ctx'][bound]}, found {found}"
    if kind.startswith("int_"):
        return f"`{key}` must be a whole number, found {found}"
    return f"bad value for `{key}`: {error['msg'].lower()}"


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return f"`{value['name']}(...)`"
    return repr(value)


def _hint(error: dict, key: str) -> str | None:
    from wirelang.diagnostics import did_you_mean

    if error["type"] == "literal_error" and isinstance(error["input"], str):
        choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        return did_you_mean(error["input"], choices)
    if error["type"] == "extra_forbidden":
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        model = TrainConfig
        for part in parent.split(".") if parent else []:
            field = model.model_fields.get(part)
            annotation = getattr(field, "annotation", None)
            model = next(
                (
                    a
                    for a in getattr(annotation, "__args__", (annotation,))
                    if isinstance(a, type) and issubclass(a, BaseModel)
                ),
                model,
            )
        leaf = key.rsplit(".", 1)[-1]
        if not parent:  # `lr` for `optimizer.lr`: a setting of a group, given at the top
            nested = sorted(
                {
                    f"{name}.{leaf}"
                    for name, f in TrainConfig.model_fields.items()
                    for sub in _models(f.annotation)
                    if leaf in sub.model_fields
                }
            )
            if nested:
                return "did you mean " + " or ".join(f"`{n}`" for n in nested) + "?"
        return did_you_mean(leaf, model.model_fields)
    return None


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models(arg)]


def apply_override(settings: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """`--set optimizer.lr=0.05`: set one (dotted) key in a copy of the settings dict."""
    out = copy.deepcopy(settings)
    parts = key.split(".")
    node = out
    for part in parts[:-1]:
        child = node.get(part)
        if isinstance(child, str):  # `data fashion_mnist_small` then `--set data.root=...`
            child = {"name": child}
        elif child is None:
            child = {}
        node[part] = child = dict(child)
        node = child
    node[parts[-1]] = value
    return out
