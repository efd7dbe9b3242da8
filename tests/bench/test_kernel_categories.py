"""The profile section's kernel table (bench/kernel_categories.py) on a made-up kernel list, and the GPU check
scripts parse (they only run on a lent GPU)."""

from __future__ import annotations

import py_compile
import subprocess
import sys

import pytest
from llm_launch.launcher import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "bench"))
import kernel_categories as kc  # noqa: E402  (bench/ is not a package)

# Names as H100 profiles of torch 2.x show them (cuBLAS, flash attention, Triton from torch.compile, NCCL, AdamW).
KERNELS = [
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1", 500.0),
    ("nvjet_tst_128x256_64x4_2x1_v_bz_coopA_NNT", 300.0),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4>>", 200.0),
    ("triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_0", 80.0),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>>", 20.0),
    ("ncclDevKernel_AllGather_RING_LL(ncclDevComm*, unsigned long, ncclWork*)", 150.0),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedAdamMathFunctor>", 50.0),
    ("some_unknown_kernel", 10.0),
]


@pytest.mark.parametrize("name, category", [(KERNELS[0][0], "matmul"), (KERNELS[1][0], "matmul"),
                                            (KERNELS[2][0], "attention"), (KERNELS[3][0], "norm/elementwise"),
                                            (KERNELS[5][0], "communication"), (KERNELS[6][0], "optimizer"),
                                            ("some_unknown_kernel", "other")])
def test_each_kernel_lands_in_its_category(name, category):
    assert kc.categorize(name) == category


def test_the_table_sums_kernel_time_and_the_rest_of_the_window_is_idle():
    table = kc.kernel_table(KERNELS, window_us=1500.0)
    assert list(table) == list(kc.CATEGORIES)
    assert table["matmul"]["us"] == 800.0 and table["norm/elementwise"]["us"] == 100.0
    assert table["idle"]["us"] == 1500.0 - 1310.0
    assert sum(v["share"] for v in table.values()) == pytest.approx(1.0, abs=1e-3)
    assert "| matmul | 0.8 | 53.3% |" in kc.markdown_table(table)


def test_overlapping_streams_never_give_negative_idle():
    assert kc.kernel_table(KERNELS, window_us=1000.0)["idle"]["us"] == 0.0


def test_the_gpu_check_scripts_parse():
    subprocess.run(["bash", "-n", str(PROJECT_ROOT / "bench" / "gpu_check.sh")], check=True)
    for script in ("gpu_check.py", "gpu_profile.py", "kernel_categories.py", "torchtitan_run.py"):
        py_compile.compile(str(PROJECT_ROOT / "bench" / script), doraise=True)
