/* What the GGUF reader (gguf.c) and writer (gguf_writer.c) share. */
#ifndef QN_FORMATS_GGUF_INTERNAL_H
#define QN_FORMATS_GGUF_INTERNAL_H

#include "quanta.h"

#define QN_GGUF_MAGIC "GGUF"
#define QN_GGUF_VERSION 3          /* what the writer writes */
#define QN_GGUF_DEFAULT_ALIGNMENT 32
#define QN_GGUF_MAX_DIMS 4

/* Bytes of one value of a fixed-size type; 0 for string and array, -1 for a
 * number that is not a type. */
int qn_gguf_type_size(uint32_t type);

/* One tensor as the header lists it: the reader fills it from a tensor info,
 * the writer from a declaration. Unused dims of ne are 1; offset is from the
 * start of the data section; bytes is the data's size. */
typedef struct {
    char *name;
    qn_dtype type;
    int n_dims;
    int64_t ne[QN_GGUF_MAX_DIMS];
    uint64_t offset, bytes;
} qn_gguf_tensor_record;

#endif
