/* Every kernel variant the ops may launch: source file and specialisation
 * defines. qn_kernels_precompile and the compile test walk this table, and
 * the launcher refuses anything not in it, so the table is complete by
 * construction. Add a line here with each new kernel or specialisation. */
#include "core/registry.h"

const qn_kernel_variant qn_kernel_variants[] = {
    {"copy.cu", ""},
    {"elementwise.cu", ""},
    /* formats */
    {"quant.cu", ""},
    /* quantized matmul */
    /* transformer ops */
    /* attention */
    /* gated delta net */
};

const size_t qn_kernel_variants_count = sizeof qn_kernel_variants / sizeof qn_kernel_variants[0];
