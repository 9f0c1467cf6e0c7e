"""The model zoo: a registry of compressible architectures and one checkpoint format."""

from amc.models import hw7_student, mobilenet_v1, mobilenet_v2, resnet  # noqa: F401  (registers the models)
from amc.models.checkpoint import (
    FORMAT,
    CheckpointError,
    load_checkpoint,
    load_weights,
    model_from_arch,
    read_checkpoint,
    save_checkpoint,
)
from amc.models.errors import AmcError
from amc.models.registry import (
    ModelConfigError,
    UnknownModelError,
    UntrustedBuilderError,
    check_builder_trusted,
    create_model,
    list_models,
    register_model,
    resolve_builder,
)

__all__ = [
    "FORMAT",
    "AmcError",
    "CheckpointError",
    "ModelConfigError",
    "UnknownModelError",
    "UntrustedBuilderError",
    "check_builder_trusted",
    "create_model",
    "list_models",
    "load_checkpoint",
    "load_weights",
    "model_from_arch",
    "read_checkpoint",
    "register_model",
    "resolve_builder",
    "save_checkpoint",
]
