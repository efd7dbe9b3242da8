"""The instance catalog, conf/instance/*.yaml: schema, names, ranks per node and sources.

Every entry must merge onto InstanceConfig, carry its catalog key as `name`, use SageMaker
instance types that botocore's service model knows, and give a source for every hardware figure
it sets.
"""

from __future__ import annotations

import dataclasses
import re
from functools import cache
from pathlib import Path

import pytest
from llm_launch.launcher.config.schema import AcceleratorKind, InstanceConfig
from omegaconf import OmegaConf

CATALOG_DIR = Path(__file__).resolve().parents[3] / "conf" / "instance"
CATALOG_FILES = sorted(CATALOG_DIR.glob("*.yaml"))

EXPECTED_KEYS = {
    "cpu",
    "local_cpu",
    "local_gpu",
    "ml.trn1.32xlarge",
    "ml.trn1n.32xlarge",
    "ml.trn2.48xlarge",
    "ml.p4d.24xlarge",
    "ml.p4de.24xlarge",
    "ml.p5.48xlarge",
    "ml.p5e.48xlarge",
    "ml.p5en.48xlarge",
    "ml.g5.12xlarge",
    "ml.g5.48xlarge",
}

# Ranks per node: one per GPU or (logical) NeuronCore; trn2 at its default LNC=2
# (https://awsdocs-neuron.readthedocs-hosted.com/en/latest/general/arch/neuron-features/logical-neuroncore-config.html).
SINGLE_NODE_TYPES = {"ml.trn1.2xlarge"}
"""Catalog types without EFA (validation refuses multi-node jobs on them)."""
EXPECTED_RANKS = {"ml.trn1.2xlarge": 2, "ml.trn1.32xlarge": 32, "ml.trn1n.32xlarge": 32, "ml.trn2.48xlarge": 64}

# Figures describing the hardware: each one an entry sets needs an entry in `sources`.
HARDWARE_FIELDS = (
    "accelerators_per_node",
    "cores_per_accelerator",
    "logical_core_config",
    "device_memory_gib",
    "bf16_tflops_per_accelerator",
    "bf16_tflops_per_core",
    "efa_interfaces",
    "network_gbps",
    "peer_gbytes_per_s",
    "host_memory_gib",
    "k8s_accelerator_resource",
)

K8S_RESOURCE = {
    "trainium1": "aws.amazon.com/neuron",
    "trainium2": "aws.amazon.com/neuron",
    "nvidia": "nvidia.com/gpu",
}

ids = [path.stem for path in CATALOG_FILES]


def load(path: Path) -> InstanceConfig:
    """The entry merged onto the schema, as an InstanceConfig (raises on unknown keys or bad types)."""
    merged = OmegaConf.merge(OmegaConf.structured(InstanceConfig), OmegaConf.load(path))
    return OmegaConf.to_object(merged)


def ranks_per_node(inst: InstanceConfig) -> int:
    """Accelerators x cores / LNC, where LNC defaults to 2 on trn2 and is 1 elsewhere."""
    lnc = (inst.logical_core_config or 2) if inst.accelerator == "trainium2" else 1
    return inst.accelerators_per_node * inst.cores_per_accelerator // lnc


@cache
def sagemaker_training_instance_types() -> frozenset[str]:
    """The InstanceType enum of CreateTrainingJob's ResourceConfig in botocore's SageMaker model."""
    botocore_session = pytest.importorskip("botocore.session")
    model = botocore_session.get_session().get_service_model("sagemaker")
    resource_config = model.operation_model("CreateTrainingJob").input_shape.members["ResourceConfig"]
    return frozenset(resource_config.members["InstanceType"].enum)


def test_catalog_has_every_expected_entry():
    assert {path.stem for path in CATALOG_FILES} >= EXPECTED_KEYS


@pytest.mark.parametrize("path", CATALOG_FILES, ids=ids)
def test_entry_merges_onto_schema_and_is_named_after_its_file(path):
    inst = load(path)
    assert inst.name == path.stem
    assert isinstance(inst.accelerator, AcceleratorKind)
    assert inst.accelerators_per_node >= 1
    assert inst.device_memory_gib > 0


@pytest.mark.parametrize("path", CATALOG_FILES, ids=ids)
def test_sagemaker_type_and_eks_label(path):
    inst = load(path)
    if not inst.name.startswith("ml."):
        assert inst.sagemaker_type is None and inst.eks_label is None
        return
    assert inst.sagemaker_type == inst.name
    assert inst.sagemaker_type in sagemaker_training_instance_types()
    assert inst.eks_label == inst.sagemaker_type.removeprefix("ml.")


@pytest.mark.parametrize("path", CATALOG_FILES, ids=ids)
def test_ranks_per_node(path):
    inst = load(path)
    if inst.accelerator in ("trainium2", "trainium3"):
        assert inst.logical_core_config in (1, 2)
    else:
        assert inst.logical_core_config is None
    if inst.accelerator in ("nvidia", "cpu"):
        assert inst.cores_per_accelerator == 1
        assert ranks_per_node(inst) == inst.accelerators_per_node
    if inst.name in EXPECTED_RANKS:
        assert ranks_per_node(inst) == EXPECTED_RANKS[inst.name]


@pytest.mark.parametrize("path", CATALOG_FILES, ids=ids)
def test_k8s_resource_matches_accelerator(path):
    inst = load(path)
    if inst.name.startswith("ml."):
        assert inst.k8s_accelerator_resource == K8S_RESOURCE[inst.accelerator]
        assert inst.efa_interfaces >= 1 or inst.name in SINGLE_NODE_TYPES


@pytest.mark.parametrize("path", CATALOG_FILES, ids=ids)
def test_every_hardware_figure_set_has_a_source(path):
    raw = OmegaConf.to_container(OmegaConf.load(path))
    inst = load(path)
    schema_fields = {f.name for f in dataclasses.fields(InstanceConfig)}
    assert set(inst.sources) <= schema_fields, "sources keyed by something that is not a field"
    missing = [
        key for key in HARDWARE_FIELDS if raw.get(key) is not None and not inst.sources.get(key, "").strip()
    ]
    assert not missing, f"{path.name}: no source for {missing}"


@pytest.mark.parametrize("path", CATALOG_FILES, ids=ids)
def test_price_has_date_and_source(path):
    inst = load(path)
    if inst.price_per_hour_usd is None:
        return
    assert inst.price_per_hour_usd > 0
    assert inst.price_date.strip(), f"{path.name}: price without price_date"
    assert re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", inst.price_date), inst.price_date
    assert inst.price_source.strip(), f"{path.name}: price without price_source"
