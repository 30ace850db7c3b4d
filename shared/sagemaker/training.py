"""A training job's runtime context, read once from the files SageMaker writes.

Hosts, channels and GPUs come from sagemaker-training's `Environment`, which already parses them.
That module fixes its paths at import time and, when neither `/opt/ml` nor `$SAGEMAKER_BASE_DIR`
exists, creates folders under `~/sagemaker_local`; so the variable is set before the import, and the
module is reloaded when a later job in the same process points the variable elsewhere.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import schema
from shared.cpus import default_workers
from shared.sagemaker.hosts import LOCAL_HOST, HostContext
from shared.sagemaker.inputs import training_channels
from shared.sagemaker.paths import BASE_DIR_ENV, JobPaths, base_dir, read_config

# SageMaker and its SDK add their own keys (sagemaker_program, sagemaker_region, ...).
SAGEMAKER_KEYS = ("sagemaker_", "_tuning_objective_metric")


def _toolkit_environment_module():
    os.environ.setdefault(BASE_DIR_ENV, str(base_dir()))
    from sagemaker_training import environment

    if environment.base_dir != os.environ[BASE_DIR_ENV]:
        environment = importlib.reload(environment)
    return environment


@dataclass(frozen=True, kw_only=True)
class TrainingContext(HostContext):
    """What a training job needs to know about where and how it runs."""

    paths: JobPaths
    hyperparameters: Any  # the job's own frozen dataclass of typed hyperparameters
    channels: dict[str, Path]
    num_gpus: int
    num_cpus: int
    network_interface: str

    def channel(self, name: str) -> Path | None:
        """The channel's folder, or None when the job was not given that channel."""
        return self.channels.get(name)


def load_training_context(hyperparameters: type) -> TrainingContext:
    """Read the job's config files and parse its hyperparameters into `hyperparameters`, a frozen
    dataclass declared with `shared.schema.setting` (SageMaker passes every value as a string).

    Outside SageMaker (a local run, a test) the config files may be missing: the job is then a
    single host, its channels are the folders present under `input/data/`, and hyperparameters are
    the defaults.
    """
    paths = JobPaths.current()
    raw_hyperparameters = read_config(paths.hyperparameters_file, {})
    typed = schema.from_strings(hyperparameters, raw_hyperparameters, what="hyperparameter",
                                ignored_prefixes=SAGEMAKER_KEYS)
    resource_config = read_config(
        paths.resource_config_file, {"current_host": LOCAL_HOST, "hosts": [LOCAL_HOST]}
    )
    data_root = paths.base / "input" / "data"
    present = sorted(p.name for p in data_root.iterdir() if p.is_dir()) if data_root.exists() else []
    input_data_config = read_config(paths.input_data_config_file, {c: {} for c in present})

    environment = _toolkit_environment_module()
    env = environment.Environment(
        resource_config=resource_config,
        # The toolkit treats an empty dict as "read the file": pass a placeholder entry instead.
        input_data_config=input_data_config or {"_none": {}},
        hyperparameters=raw_hyperparameters or {"_none": ""},
    )
    channels = {
        name: Path(folder) for name, folder in env.channel_input_dirs.items() if name != "_none"
    }
    return TrainingContext(
        paths=paths,
        hyperparameters=typed,
        hosts=list(env.hosts),
        current_host=env.current_host,
        channels=channels,
        num_gpus=env.num_gpus,
        num_cpus=default_workers(),  # the toolkit counts the host's CPUs, not the job's share
        network_interface=env.network_interface_name,
        inputs=training_channels(input_data_config),
    )
