/* libFuzzer target: the safetensors reader (and so the JSON parser) on
 * arbitrary bytes. A file that opens has every tensor and metadata entry
 * read, and each tensor's last byte touched. */
#include "quanta.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qn_safetensors *st;
    if (qn_safetensors_open_memory(data, size, &st) != QN_OK) return 0;
    volatile uint8_t sink = 0;
    for (int64_t i = 0; i < qn_safetensors_tensor_count(st); i++) {
        qn_safetensors_tensor t;
        if (qn_safetensors_tensor_get(st, i, &t) != QN_OK) continue;
        if (qn_safetensors_find(st, t.name) < 0) __builtin_trap(); /* every tensor is found by name */
        if (t.bytes) sink ^= ((const uint8_t *)t.data)[t.bytes - 1];
    }
    qn_safetensors_metadata(st, "format");
    qn_safetensors_close(st);
    (void)sink;
    return 0;
}
