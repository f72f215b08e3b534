/* Every kernel variant the ops may launch: source file and specialisation
 * defines. qn_kernels_precompile and the compile test walk this table, and
 * the launcher refuses anything not in it, so the table is complete by
 * construction. Add a line here with each new kernel or specialisation. */
#include "core/registry.h"

const qn_kernel_variant qn_kernel_variants[] = {
    {"copy.cu", ""},
    {"copy.cu", "-DQN_DST=f32"},
    {"copy.cu", "-DQN_DST=f16"},
    {"copy.cu", "-DQN_DST=bf16"},
    {"elementwise.cu", "-DQN_DST=f32"},
    {"elementwise.cu", "-DQN_DST=f16"},
    {"elementwise.cu", "-DQN_DST=bf16"},
    /* formats */
    {"quant.cu", ""},
    {"quant.cu", "-DQN_BLOCK=q4_0"},
    {"quant.cu", "-DQN_BLOCK=q4_1"},
    {"quant.cu", "-DQN_BLOCK=q5_0"},
    {"quant.cu", "-DQN_BLOCK=q5_1"},
    {"quant.cu", "-DQN_BLOCK=q8_0"},
    {"quant.cu", "-DQN_BLOCK=q8_1"},
    {"quant.cu", "-DQN_BLOCK=q2_K"},
    {"quant.cu", "-DQN_BLOCK=q3_K"},
    {"quant.cu", "-DQN_BLOCK=q4_K"},
    {"quant.cu", "-DQN_BLOCK=q5_K"},
    {"quant.cu", "-DQN_BLOCK=q6_K"},
    {"quant.cu", "-DQN_BLOCK=q8_K"},
    {"quant.cu", "-DQN_BLOCK=iq4_nl"},
    {"quant.cu", "-DQN_BLOCK=iq4_xs"},
    {"quant.cu", "-DQN_BLOCK=mxfp4"},
    /* quantized matmul */
    /* transformer ops */
    /* attention */
    /* gated delta net */
};

const size_t qn_kernel_variants_count = sizeof qn_kernel_variants / sizeof qn_kernel_variants[0];
