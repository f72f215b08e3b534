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
    {"stream.cu", ""}, /* the benchmarks' read ceiling */
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
    {"matvec.cu", "-DQN_BLOCK=f32"},
    {"matvec.cu", "-DQN_BLOCK=f16"},
    {"matvec.cu", "-DQN_BLOCK=bf16"},
    {"matvec.cu", "-DQN_BLOCK=q4_0"},
    {"matvec.cu", "-DQN_BLOCK=q4_1"},
    {"matvec.cu", "-DQN_BLOCK=q5_0"},
    {"matvec.cu", "-DQN_BLOCK=q5_1"},
    {"matvec.cu", "-DQN_BLOCK=q8_0"},
    {"matvec.cu", "-DQN_BLOCK=q8_1"},
    {"matvec.cu", "-DQN_BLOCK=q2_K"},
    {"matvec.cu", "-DQN_BLOCK=q3_K"},
    {"matvec.cu", "-DQN_BLOCK=q4_K"},
    {"matvec.cu", "-DQN_BLOCK=q5_K"},
    {"matvec.cu", "-DQN_BLOCK=q6_K"},
    {"matvec.cu", "-DQN_BLOCK=q8_K"},
    {"matvec.cu", "-DQN_BLOCK=iq4_nl"},
    {"matvec.cu", "-DQN_BLOCK=iq4_xs"},
    {"matvec.cu", "-DQN_BLOCK=mxfp4"},
    {"matvec_affine.cu", "-DQN_AFFINE_BITS=2"},
    {"matvec_affine.cu", "-DQN_AFFINE_BITS=3"},
    {"matvec_affine.cu", "-DQN_AFFINE_BITS=4"},
    {"matvec_affine.cu", "-DQN_AFFINE_BITS=6"},
    {"matvec_affine.cu", "-DQN_AFFINE_BITS=8"},
    /* transformer ops */
    {"norm.cu", ""},
    {"rope.cu", ""},
    {"activation.cu", ""},
    {"softmax.cu", ""},
    {"embed.cu", ""},
    {"moe_route.cu", ""},
    {"sample.cu", ""},
    /* attention */
    {"kv_cache.cu", ""},
    {"attention.cu", "-DQN_ATTN_D=64"},
    {"attention.cu", "-DQN_ATTN_D=80"},
    {"attention.cu", "-DQN_ATTN_D=96"},
    {"attention.cu", "-DQN_ATTN_D=128"},
    {"attention.cu", "-DQN_ATTN_D=256"},
    {"attention.cu", "-DQN_ATTN_D=512"},
    /* gated delta net */
    {"deltanet.cu", ""},
    {"deltanet.cu", "-DQN_GDN_DK=128 -DQN_GDN_DV=128"},
    {"deltanet.cu", "-DQN_GDN_DK=128 -DQN_GDN_DV=256"},
    {"deltanet.cu", "-DQN_GDN_DK=256 -DQN_GDN_DV=128"},
    {"deltanet.cu", "-DQN_GDN_DK=256 -DQN_GDN_DV=256"},
};

const size_t qn_kernel_variants_count = sizeof qn_kernel_variants / sizeof qn_kernel_variants[0];
